"""What `relocnet search` reads: one immutable snapshot of the FAISS index and its video list.

Layout of an index directory ``IDX``::

    IDX/catalog.sqlite       the table of videos (catalog.py), the source of every snapshot
    IDX/snap-<name>/         index.faiss + meta.json (factory, parameters, videos, model)
    IDX/CURRENT              the name of the snapshot to search, replaced atomically

A snapshot directory is written under a temporary name and renamed when complete; CURRENT is
then replaced (temp file + ``os.replace``), and older snapshots are deleted. A reader follows
CURRENT once, so it always sees one whole snapshot, never a half-written one.
"""
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import faiss

from ..data.pairs import write_json_atomic
from .faiss_index import set_search_params

__all__ = ["Snapshot", "write_snapshot", "load_snapshot", "SnapshotError"]

CURRENT = "CURRENT"


class SnapshotError(RuntimeError):
    """An index directory without a usable snapshot."""


@dataclass
class Snapshot:
    index: faiss.Index
    meta: Dict[str, Any]

    @property
    def videos(self) -> List[Dict[str, Any]]:
        """[{"path", "digest", "seconds"}] in id order (a vector's video position)."""
        return self.meta["videos"]


def write_snapshot(root: str, index: faiss.Index, meta: Dict[str, Any]) -> str:
    """Publish ``index`` + ``meta`` as the current snapshot of ``root``; returns its directory."""
    name = time.strftime("snap-%Y%m%d-%H%M%S-") + f"{os.getpid()}-{time.time_ns() % 10**9}"
    tmp = tempfile.mkdtemp(prefix=".tmp-snap-", dir=root)
    try:
        faiss.write_index(index, os.path.join(tmp, "index.faiss"))
        write_json_atomic(os.path.join(tmp, "meta.json"), meta)
        os.rename(tmp, os.path.join(root, name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd, cur = tempfile.mkstemp(prefix=".tmp-current-", dir=root)
    with os.fdopen(fd, "w") as f:
        f.write(name + "\n")
    os.replace(cur, os.path.join(root, CURRENT))
    for old in os.listdir(root):
        if (old.startswith("snap-") and old != name) or old.startswith(".tmp-snap-"):
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    return os.path.join(root, name)


def load_snapshot(root: str, mmap: bool = False) -> Snapshot:
    """The current snapshot of the index directory ``root``."""
    try:
        with open(os.path.join(root, CURRENT), encoding="utf-8") as f:
            name = f.read().strip()
    except FileNotFoundError:
        raise SnapshotError(f"index {root}: no index there (run `relocnet index` first)") from None
    d = os.path.join(root, name)
    try:
        with open(os.path.join(d, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        index = faiss.read_index(os.path.join(d, "index.faiss"), flags)
    except (OSError, ValueError, RuntimeError) as exc:
        raise SnapshotError(f"index {root}: snapshot {name} cannot be read ({exc})") from exc
    set_search_params(index, int(meta.get("nprobe", 0)))
    return Snapshot(index, meta)
