#!/usr/bin/env python
"""Install detectron2 into the current interpreter without compiling anything.

detectron2 is not published on PyPI. The registry's ``sal-detectron2==0.7.2`` wheel is
upstream detectron2 (2024 code) built for CPython 3.10. relocnet needs only its pure-Python
code, so this script downloads that wheel, drops the compiled ``detectron2/_C*.so``, retags
it ``py3-none-any``, removes the metadata pins that the Python code does not need
(``numpy<2``, ``black``), and installs it with ``--no-deps``. Its real run-time dependencies
are declared by relocnet's setup.py.

A detectron2 that is already importable is left as it is.
"""
import argparse
import glob
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

WHEEL_SPEC = "sal-detectron2==0.7.2"
DROP_REQUIREMENTS = ("numpy", "black")


def run(cmd, **kwargs):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def patch_metadata(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    kept = []
    for line in lines:
        m = re.match(r"Requires-Dist:\s*([A-Za-z0-9_.-]+)", line)
        if m and m.group(1).lower() in DROP_REQUIREMENTS and "extra ==" not in line:
            continue
        kept.append(line)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


def patch_wheel_tags(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"^Tag: .*$", "Tag: py3-none-any", text, flags=re.M)
    text = re.sub(r"^Root-Is-Purelib: .*$", "Root-Is-Purelib: true", text, flags=re.M)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def build_pure_wheel(workdir: str) -> str:
    download = os.path.join(workdir, "download")
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.10", WHEEL_SPEC, "-d", download])
    (wheel,) = glob.glob(os.path.join(download, "*.whl"))
    unpack = os.path.join(workdir, "unpack")
    run([sys.executable, "-m", "wheel", "unpack", wheel, "-d", unpack])
    (root,) = glob.glob(os.path.join(unpack, "*"))
    for so in glob.glob(os.path.join(root, "detectron2", "_C*.so")):
        os.remove(so)
    (distinfo,) = glob.glob(os.path.join(root, "*.dist-info"))
    patch_metadata(os.path.join(distinfo, "METADATA"))
    patch_wheel_tags(os.path.join(distinfo, "WHEEL"))
    # RECORD lists the removed .so; `wheel pack` rewrites RECORD from the tree.
    out = os.path.join(workdir, "dist")
    os.makedirs(out)
    run([sys.executable, "-m", "wheel", "pack", root, "-d", out])
    (packed,) = glob.glob(os.path.join(out, "*.whl"))  # named from WHEEL's tag: py3-none-any
    return packed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true",
                        help="install even if a detectron2 is already importable")
    args = parser.parse_args()
    if importlib.util.find_spec("detectron2") is not None and not args.force:
        import detectron2

        print(f"detectron2 {detectron2.__version__} already installed at "
              f"{os.path.dirname(detectron2.__file__)}; keeping it.")
        return 0
    with tempfile.TemporaryDirectory(prefix="relocnet-d2-") as tmp:
        wheel = build_pure_wheel(tmp)
        run([sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", wheel])
    return 0


if __name__ == "__main__":
    sys.exit(main())
