"""Each equation of the paper (1-20) is named in the docstring of exactly one function, the one
that computes it (docs/ARCHITECTURE.md lists them)."""
import ast
import os
import re
from collections import defaultdict

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "relocnet")
EQS = re.compile(r"\b[Ee]qs?\.\s*(\d+(?:\s*(?:-|,|and)\s*\d+)*)")


def _numbers(text: str):
    out = set()
    for group in EQS.findall(text):
        for part in re.split(r"\s*(?:,|and)\s*", group):
            a, _, b = part.partition("-")
            out.update(range(int(a), int(b or a) + 1))
    return out


def equation_index():
    """{equation: ["path:Class.function", ...]} over the package's function docstrings."""
    index = defaultdict(list)
    for root, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                body = getattr(node, "body", [])
                for child in body if isinstance(body, list) else []:
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        owner = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
                        where = f"{os.path.relpath(path, os.path.dirname(PACKAGE))}:" \
                                f"{owner}{child.name}"
                        for n in _numbers(ast.get_docstring(child) or ""):
                            index[n].append(where)
    return index


def test_each_equation_is_named_by_exactly_one_function():
    index = equation_index()
    assert sorted(index) == list(range(1, 21)), sorted(index)
    twice = {n: w for n, w in index.items() if len(w) > 1}
    assert not twice, twice
