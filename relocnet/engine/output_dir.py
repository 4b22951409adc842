"""The ``--output`` directory of `relocnet relocalize`: what relocnet owns there, and nothing else.

A run writes into ``<out>.tmp-*`` (next to ``<out>``) and, when everything succeeded, writes
``MANIFEST`` (every file it wrote, with its size) and renames the directory to ``<out>``.
``<out>`` may exist only when it is empty or holds exactly the files of its manifest: a
directory with any other file (a user's notes, a ``results.json`` of someone else) is refused,
and replacing an old result removes only the files its manifest lists (a result written before
manifests existed counts as one when every file in it is listed in its ``results.json``). One run at a time may
write ``<out>``: the run holds a lock (``.<out>.lock`` next to it) from start to publish, and a
second run is refused at once. Left-overs of killed runs (``<out>.tmp-*`` / ``<out>.old-*`` with
a manifest-in-progress) are removed by the next run that holds the lock.
"""
import contextlib
import json
import os
import shutil
import tempfile
from typing import Iterator, List

from ..utils.fileio import LockedError, exclusive_lock, write_json_atomic

__all__ = ["MANIFEST", "OutputDirError", "claim_output", "publish"]

MANIFEST = ".relocnet-output.json"
_WRITING = {"relocnet_output": "writing"}


class OutputDirError(RuntimeError):
    """``--output`` cannot be used (someone else's files, another run, not a directory)."""


def _files(root: str) -> List[str]:
    """Every file under ``root``, relative, sorted ('/' separated)."""
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/") for n in names]
    return sorted(out)


def _manifest(root: str):
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def _legacy_files(root: str) -> List[str]:
    """What a result written before manifests holds, from its results.json ([] if none)."""
    try:
        with open(os.path.join(root, "results.json"), encoding="utf-8") as f:
            res = json.load(f)
        files = res["files"]
        if "relocnet_version" not in res:
            return []
        listed = [files["report"], files["timeline"], "results.json"]
        listed += [p for ps in files["keyframes"].values() for p in ps]
        return listed + list(files["segments"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def _foreign_files(path: str) -> List[str]:
    """Files in the existing directory ``path`` that no relocnet manifest there accounts for
    (a result written before manifests: its results.json lists them)."""
    manifest = _manifest(path)
    owned = set(manifest["files"]) | {MANIFEST} if manifest else set(_legacy_files(path))
    return [f for f in _files(path) if f not in owned]


def _check(path: str) -> None:
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        raise OutputDirError(f"--output {path} exists and is not a directory")
    foreign = _foreign_files(path)
    if foreign:
        raise OutputDirError(f"--output {path} exists and is not a relocnet result (it holds "
                             f"{len(foreign)} file(s) relocnet did not write, e.g. "
                             f"{foreign[0]!r}); choose another directory")


def _sweep_leftovers(path: str) -> None:
    parent, base = os.path.split(path)
    for name in os.listdir(parent):
        p = os.path.join(parent, name)
        if not (os.path.isdir(p) and _manifest(p) is not None):
            continue
        if name.startswith(base + ".tmp-"):  # an unfinished run: all of it is ours
            shutil.rmtree(p, ignore_errors=True)
        elif name.startswith(base + ".old-"):  # a replaced result: what its manifest lists
            _remove_owned(p)


@contextlib.contextmanager
def claim_output(path: str) -> Iterator[str]:
    """Lock ``path``, check it (see the module docstring) and yield a fresh temp directory
    next to it; the temp directory is removed unless :func:`publish` moved it into place."""
    path = os.path.abspath(path)
    parent, base = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(os.path.join(parent, f".{base}.lock"),
                                               f"--output {path}"))
        except LockedError as exc:
            raise OutputDirError(f"{exc}: another relocnet run is writing there; wait for it "
                                 "or choose another directory") from None
        _check(path)
        _sweep_leftovers(path)
        tmp = tempfile.mkdtemp(prefix=base + ".tmp-", dir=parent)
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)  # gone already after publish
        write_json_atomic(os.path.join(tmp, MANIFEST), {**_WRITING, "files": {}})
        yield tmp


def publish(tmp: str, path: str) -> None:
    """Seal ``tmp`` with its manifest and put it at ``path``; an old result there is removed
    file by file (only what its manifest lists; anything else stops the run, nothing is lost)."""
    path = os.path.abspath(path)
    files = {f: os.path.getsize(os.path.join(tmp, f)) for f in _files(tmp) if f != MANIFEST}
    write_json_atomic(os.path.join(tmp, MANIFEST), {"relocnet_output": 1, "files": files})
    if os.path.lexists(path):
        _check(path)  # again: a user may have added a file while we ran
        old = tempfile.mkdtemp(prefix=os.path.basename(path) + ".old-", dir=os.path.dirname(path))
        os.rmdir(old)
        os.rename(path, old)
        os.rename(tmp, path)
        _remove_owned(old)
    else:
        os.rename(tmp, path)


def _remove_owned(old: str) -> None:
    manifest = _manifest(old) or {"files": _legacy_files(old)}
    for f in [*manifest["files"], MANIFEST]:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(old, f))
    for d, _, _ in sorted(os.walk(old), key=lambda x: -len(x[0])):  # empty folders, deepest first
        with contextlib.suppress(OSError):
            os.rmdir(d)
