"""The archive's table of videos: path, size, mtime, content hash, seconds, descriptors or error.

One SQLite file per writer: ``catalog.sqlite`` (the archive, written by rank 0 only) and
``shard-<rank>.sqlite`` (what one indexing process computed in its run). Every video is one
transaction, so a killed run leaves whole rows only; a row's ``descriptors`` are float16
(seconds, dim) bytes, or NULL with ``error`` set for a video that could not be decoded.
"""
import os
import sqlite3
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import numpy as np

__all__ = ["Catalog", "VideoRow", "CatalogError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL, seconds INTEGER NOT NULL, dim INTEGER NOT NULL,
    error TEXT, descriptors BLOB);
"""
_COLUMNS = "path, size, mtime_ns, digest, seconds, dim, error, descriptors"


class CatalogError(RuntimeError):
    """A catalog that does not belong to this model or cannot be read."""


@dataclass
class VideoRow:
    """One video of the archive (``descriptors`` None when it could not be decoded)."""

    path: str
    size: int
    mtime_ns: int
    digest: str
    seconds: int
    dim: int
    error: Optional[str] = None
    descriptors: Optional[bytes] = None

    def array(self) -> np.ndarray:
        """(seconds, dim) float32 descriptors."""
        if self.descriptors is None:
            return np.zeros((0, self.dim), np.float32)
        raw = np.frombuffer(self.descriptors, dtype=np.float16)
        return raw.reshape(self.seconds, self.dim).astype(np.float32)

    @staticmethod
    def from_array(path: str, size: int, mtime_ns: int, digest: str,
                   descriptors: np.ndarray) -> "VideoRow":
        d = np.ascontiguousarray(descriptors, dtype=np.float16)
        return VideoRow(path, size, mtime_ns, digest, d.shape[0], d.shape[1], None, d.tobytes())


class Catalog:
    """A SQLite table of VideoRow plus a key/value ``meta`` table."""

    def __init__(self, path: str):
        self.path = path
        try:
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"catalog {path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ meta
    def meta(self) -> Dict[str, str]:
        return dict(self.db.execute("SELECT key, value FROM meta"))

    def check_meta(self, wanted: Dict[str, str]) -> None:
        """Record ``wanted`` in an empty catalog; CatalogError if it holds other values."""
        have = self.meta()
        for key, value in wanted.items():
            if key in have and have[key] != value:
                raise CatalogError(f"index {os.path.dirname(self.path)} was built with another "
                                   f"{key} ({have[key][:16]} != {value[:16]}); index into a new "
                                   "--index directory")
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", wanted.items())

    # ------------------------------------------------------------------ rows
    def get(self, path: str) -> Optional[VideoRow]:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM videos WHERE path = ?", (path,)).fetchone()
        return VideoRow(*row) if row else None

    def find_digest(self, digest: str) -> Optional[VideoRow]:
        """A decoded row with this content hash (a copied or renamed file), if any."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM videos WHERE digest = ? AND error IS NULL "
                              "LIMIT 1", (digest,)).fetchone()
        return VideoRow(*row) if row else None

    def put(self, row: VideoRow) -> None:
        """Insert or replace one row, in its own transaction."""
        with self.db:
            self._put(row)

    def _put(self, row: VideoRow) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO videos ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                        (row.path, row.size, row.mtime_ns, row.digest, row.seconds, row.dim,
                         row.error, row.descriptors))

    def rows(self, with_descriptors: bool = True) -> Iterator[VideoRow]:
        """Every row, ordered by path."""
        cols = _COLUMNS if with_descriptors else _COLUMNS.replace("descriptors", "NULL")
        for row in self.db.execute(f"SELECT {cols} FROM videos ORDER BY path"):
            yield VideoRow(*row)

    def paths(self) -> List[str]:
        return [p for (p,) in self.db.execute("SELECT path FROM videos ORDER BY path")]

    def merge(self, shards: List["Catalog"], keep: Optional[List[str]] = None) -> None:
        """One transaction: every shard row replaces this catalog's row of its path; with
        ``keep``, rows of paths not in it (files gone from the archive) are deleted."""
        with self.db:
            for shard in shards:
                for row in shard.rows():
                    self._put(row)
            if keep is not None:
                keep_set = set(keep)
                gone = [(p,) for p in self.paths() if p not in keep_set]
                self.db.executemany("DELETE FROM videos WHERE path = ?", gone)
