"""Index videos into an archive: per-video rows of descriptors (catalog), then one snapshot.

``index_videos`` runs over one process's share of the video list and writes each finished video
to its shard catalog in one transaction: unchanged files (same size and mtime, or same content
hash) are skipped, files whose content another row already has reuse its descriptors, and a
video that cannot be decoded gets a row with its one-line error (it is skipped, not retried,
until the file changes). ``build_snapshot`` turns the archive catalog into the FAISS snapshot
that `relocnet search` reads.
"""
import dataclasses
import os
import time
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from ..data.video import VideoDecodeError
from ..engine.feature_cache import file_digest
from .catalog import Catalog, VideoRow
from .faiss_index import build_index, choose_factory, index_bytes, pack_ids
from .snapshot import write_snapshot

__all__ = ["VIDEO_EXTENSIONS", "list_videos", "index_videos", "build_snapshot"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mpg", ".mpeg")

Describe = Callable[[str], np.ndarray]  # video path -> (seconds, dim) descriptors


def list_videos(source: str) -> List[str]:
    """Absolute paths, sorted: the video files under a directory (recursive, by extension), or
    the non-empty lines (relative to the list's directory) of a list file."""
    if os.path.isdir(source):
        found = [os.path.join(d, f) for d, _, files in os.walk(source) for f in files
                 if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith(".")]
    elif source.lower().endswith(VIDEO_EXTENSIONS):
        raise ValueError(f"--videos {source}: a video; give a directory or a list file")
    elif os.path.isfile(source):
        base = os.path.dirname(os.path.abspath(source))
        try:
            with open(source, encoding="utf-8") as f:
                found = [os.path.join(base, line.strip()) for line in f if line.strip()]
        except UnicodeDecodeError:
            raise ValueError(f"--videos {source}: not a text list of video paths") from None
    else:
        raise FileNotFoundError(f"--videos {source}: no such directory or list file")
    return sorted({os.path.abspath(p) for p in found})


def _row(path: str, catalogs: List[Catalog], describe: Describe) -> Optional[VideoRow]:
    """The up-to-date row of ``path``: None when the archive's row is still right, the same
    row with the new mtime when only that changed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return VideoRow(path, 0, 0, "", 0, 0, f"{path}: {exc.strerror}", None)
    old = catalogs[0].get(path)
    if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
        return None
    digest = file_digest(path)
    if old is not None and old.digest == digest:  # touched, not changed
        return dataclasses.replace(old, size=st.st_size, mtime_ns=st.st_mtime_ns)
    for catalog in catalogs:  # the same content under another name: reuse it
        same = catalog.find_digest(digest)
        if same is not None:
            return dataclasses.replace(same, path=path, size=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        desc = describe(path)
    except VideoDecodeError as exc:
        return VideoRow(path, st.st_size, st.st_mtime_ns, digest, 0, 0,
                        " ".join(str(exc).split()), None)
    if len(desc) == 0:
        return VideoRow(path, st.st_size, st.st_mtime_ns, digest, 0, 0,
                        f"{path}: shorter than one second", None)
    return VideoRow.from_array(path, st.st_size, st.st_mtime_ns, digest, desc)


def index_videos(paths: Iterable[str], archive: Catalog, shard: Catalog, describe: Describe,
                 on_video: Optional[Callable[[VideoRow, bool], None]] = None) -> Dict[str, int]:
    """Bring the rows of ``paths`` up to date, each finished video committed to ``shard``;
    ``on_video(row, changed)`` after each. Returns counts: unchanged, indexed, failed."""
    counts = {"unchanged": 0, "indexed": 0, "failed": 0}
    for path in paths:
        old = archive.get(path)
        row = _row(path, [archive, shard], describe)
        changed = row is not None and (old is None or old.digest != row.digest)
        if row is not None:
            shard.put(row)
        if changed:
            counts["failed" if row.error else "indexed"] += 1
        else:
            counts["unchanged"] += 1
            row = row or old
        if on_video is not None:
            on_video(row, changed)
    return counts


def _chunks(catalog: Catalog, rows: List[VideoRow], batch: int = 1 << 16):
    """(ids, vectors) of the rows, in chunks of about ``batch`` vectors."""
    ids, vecs, size = [], [], 0
    for pos, row in enumerate(rows):
        desc = catalog.get(row.path).array()
        ids.append(pack_ids(pos, np.arange(len(desc))))
        vecs.append(desc)
        size += len(desc)
        if size >= batch:
            yield np.concatenate(ids), np.concatenate(vecs)
            ids, vecs, size = [], [], 0
    if ids:
        yield np.concatenate(ids), np.concatenate(vecs)


def build_snapshot(root: str, catalog: Catalog, extra_meta: Dict) -> Dict:
    """Build the FAISS index of every decoded row of ``catalog`` and publish it as the current
    snapshot of ``root``; returns its meta."""
    t0 = time.perf_counter()
    rows = list(catalog.rows(with_descriptors=False))
    ok = [r for r in rows if r.error is None]
    n = sum(r.seconds for r in ok)
    dim = ok[0].dim if ok else int(catalog.meta().get("dim", 1))
    params = choose_factory(n, dim)
    index = build_index(lambda: _chunks(catalog, ok), n, dim, params)
    meta = dict(extra_meta, **params, dim=dim, ntotal=int(index.ntotal), hours=n / 3600,
                videos=[{"path": r.path, "digest": r.digest, "seconds": r.seconds} for r in ok],
                errors=[{"path": r.path, "error": r.error} for r in rows if r.error],
                index_bytes=index_bytes(index), built=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime()))
    meta["build_seconds"] = round(time.perf_counter() - t0, 3)
    write_snapshot(root, index, meta)
    return meta
