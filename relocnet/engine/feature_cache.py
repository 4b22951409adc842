"""An on-disk cache of a reference video's per-window backbone features.

Re-localizing a second query in the same reference skips decoding and the backbone: the
features of a reference depend only on the video, the config and the weights, never on the query.

**Key** = SHA-256 of (cache format version, SHA-256 of the reference file's bytes, model digest).

- The video part hashes the whole file, streamed in 1 MiB blocks (about 1 s per GB): content,
  not the name, so a renamed or copied video hits and a re-encoded or edited one misses. A
  size + mtime + partial hash would be faster but can be fooled by edits that keep size and
  mtime; the full hash is small next to the backbone's cost on every length.
- The model digest (:func:`model_digest`) hashes the config keys that shape features (MODEL
  without WEIGHTS, DEVICE and the decoder; INPUT.FORMAT; INPUT.VIDEO), the windows per backbone
  call, and every tensor of the model's state dict *after* its weights were loaded: it covers the
  weights file's contents, pretrained branches and random initializations alike.

**Entry** = one file ``<key>.rfc``: ``MAGIC``, then chunks (8-byte little-endian length + an
uncompressed ``.npz`` of named arrays), then a JSON footer (chunk count, metadata, SHA-256 of
every byte before the footer), the SHA-256 of the footer itself (32 bytes), the footer's 8-byte
length, and ``END``. It is written to ``.tmp-<key>-*`` in the same directory (the writer holds a
``flock`` on it) and renamed only when complete; temp files are never read. A reader accepts an
entry only when the end marker, the footer's checksum, the footer and the data checksum all hold,
so a file cut short, overwritten or damaged anywhere (one bit of the footer included) is
reported, deleted and recomputed; chunk lengths are checked against the footer before reading.

Writers and readers hold one chunk at a time in memory. After each write the cache is pruned
to ``max_bytes`` ($RELOCNET_CACHE_MAX_GB, default 20 GiB) by deleting the least recently used
entries (a hit refreshes an entry's mtime); temp files of live writers count against the cap,
those of dead writers (killed, no lock held) are deleted. The streaming code does not cache a
reference whose entry would take more than half of it. A cache that cannot be used (unwritable,
full disk, an entry that fails while read) never stops a run: relocalize goes on without it
and says so.

Size: an entry holds every window's features, float32, so each second is stored once per window
covering it (REFERENCE_SECONDS / (REFERENCE_SECONDS - WINDOW_OVERLAP) windows): C x h x w x 4 B per
window-second. CPU configs (144 channels at 6 x 8): 28 kB per window-second, so about 46 kB per
reference second (170 MB per hour) with their 2 s test overlap and 0.14 MB per second with a 4 s
one. The paper config (1600 channels at 15 x 20, 4 s overlap): about 9.6 MB per second.
"""
import hashlib
import io
import fcntl
import json
import math
import os
import struct
import tempfile
import zipfile
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import torch

from ..utils.fileio import TMP_PREFIX, abandoned

__all__ = ["FORMAT_VERSION", "FeatureCache", "CacheEntry", "CacheWriter", "file_digest",
           "model_digest", "default_cache_dir", "CacheError", "CacheReadError", "cache_max_bytes"]

FORMAT_VERSION = 2
MAGIC, END = b"RLCFEAT2", b"RLCEND02"
SUFFIX = ".rfc"
_LEN = struct.Struct("<Q")
_BLOCK = 1 << 20
_DIGEST = 32  # bytes of a SHA-256


class CacheError(ValueError):
    """A cache setting that cannot be used ($RELOCNET_CACHE_MAX_GB)."""


def cache_max_bytes() -> int:
    """$RELOCNET_CACHE_MAX_GB (default 20) in bytes; CacheError naming the variable if bad."""
    text = os.environ.get("RELOCNET_CACHE_MAX_GB", "20")
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib >= 0):
        raise CacheError(f"$RELOCNET_CACHE_MAX_GB={text!r}: expected a size in GiB >= 0 "
                         "(e.g. 20)")
    return int(gib * 2**30)


def default_cache_dir() -> str:
    """$RELOCNET_CACHE, else ~/.cache/relocnet/features."""
    return os.environ.get("RELOCNET_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "relocnet", "features")


def file_digest(path: str) -> str:
    """SHA-256 (hex) of a file's bytes, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def model_digest(cfg, model: torch.nn.Module) -> str:
    """SHA-256 (hex) of what makes a model's reference features: config keys and the weights of
    the modules that compute them (backbone and, RelocRCNN, the RPN); the matching head's weights
    and the match threshold are left out, so a retrained or recalibrated head reuses the cache."""
    h = hashlib.sha256()
    model_cfg = cfg.MODEL.clone()
    model_cfg.defrost()
    for key in ("WEIGHTS", "DEVICE"):
        model_cfg.pop(key, None)
    model_cfg.RELOC.pop("DECODER", None)
    h.update(model_cfg.dump().encode())
    h.update(cfg.INPUT.VIDEO.dump().encode())
    h.update(f"format={cfg.INPUT.FORMAT} batch={getattr(model, 'windows_per_batch', '')}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(("backbone.", "proposal_generator.")):
            continue
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class CacheReadError(RuntimeError):
    """A verified entry that failed while its chunks were read (changed on disk meanwhile)."""


class CacheEntry:
    """A complete, verified entry: ``meta`` and its chunks, read one at a time."""

    def __init__(self, path: str, meta: Dict[str, Any], num_chunks: int, data_end: int):
        self.path, self.meta, self.num_chunks, self._end = path, meta, num_chunks, data_end

    def chunks(self) -> Iterator[Dict[str, np.ndarray]]:
        """The chunks in order; CacheReadError (after removing the entry) if reading fails."""
        try:
            yield from self._chunks()
        except (OSError, ValueError, EOFError, KeyError, struct.error, zipfile.BadZipFile) as exc:
            _remove_quietly(self.path)
            raise CacheReadError(f"cache entry {self.path} failed while read ({exc}); removed "
                                 "it") from exc

    def _chunks(self) -> Iterator[Dict[str, np.ndarray]]:
        with open(self.path, "rb") as f:
            f.seek(len(MAGIC))
            for _ in range(self.num_chunks):
                (n,) = _LEN.unpack(f.read(_LEN.size))
                if n > self._end - f.tell():
                    raise IOError(f"{self.path}: a chunk of {n} bytes runs past the data")
                with np.load(io.BytesIO(f.read(n)), allow_pickle=False) as npz:
                    yield {k: npz[k] for k in npz.files}
            if f.tell() != self._end:
                raise IOError(f"{self.path}: chunks end at byte {f.tell()}, footer says {self._end}")


class CacheWriter:
    """Appends chunks to a temp file; :meth:`commit` seals and renames it into place."""

    def __init__(self, cache: "FeatureCache", key: str, meta: Dict[str, Any]):
        self.cache, self.key, self.meta = cache, key, dict(meta)
        self.problem = ""  # why the entry was given up, if it was
        os.makedirs(cache.root, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{key}-", suffix=SUFFIX, dir=cache.root)
        self._f = os.fdopen(fd, "wb")
        fcntl.flock(fd, fcntl.LOCK_EX)  # tells prune() this writer is alive
        self._hash = hashlib.sha256()
        self.num_chunks = self.bytes_written = 0
        self._write(MAGIC)

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.bytes_written += len(data)

    def append(self, chunk: Dict[str, np.ndarray]) -> bool:
        """Add a chunk; False (with ``problem`` set, the temp file dropped) if writing failed."""
        buf = io.BytesIO()
        np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in chunk.items()})
        data = buf.getvalue()
        try:
            self._write(_LEN.pack(len(data)))
            self._write(data)
        except OSError as exc:
            return self._give_up(exc)
        self.num_chunks += 1
        return True

    def worth_it(self, batches: float) -> bool:
        """False (``problem`` says why) when the entry would take more than half of the cache's
        size cap, estimated from the first chunk (chunks are nearly equal in size)."""
        cap = self.cache.max_bytes
        if cap is None or self.num_chunks != 1:
            return True
        estimate = self.bytes_written * batches
        if estimate <= cap / 2:
            return True
        self.problem = (f"not caching features of {self.meta.get('reference')}: they would take "
                        f"{estimate / 2**30:.1f} GiB, more than half of the cache's "
                        f"{cap / 2**30:.1f} GiB cap")
        return False

    def _give_up(self, exc: OSError) -> bool:
        self.problem = f"not caching features in {self.cache.root}: {exc}"
        self.abort()
        return False

    def commit(self) -> Optional[str]:
        """Seal the entry (footer, fsync) and rename it to its final name; returns that path,
        or None (with ``problem`` set) if the cache could not take it."""
        try:
            return self._commit()
        except OSError as exc:
            return self._give_up(exc) or None

    def _commit(self) -> str:
        footer = json.dumps({"version": FORMAT_VERSION, "key": self.key, "chunks": self.num_chunks,
                             "data_end": self._f.tell(), "sha256": self._hash.hexdigest(),
                             "meta": self.meta}).encode()
        self._f.write(footer + hashlib.sha256(footer).digest() + _LEN.pack(len(footer)) + END)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        final = self.cache.path(self.key)
        os.replace(self.tmp, final)
        self.cache.prune(keep=final)
        return final

    def abort(self) -> None:
        """Drop the temp file (an error or an interrupt happened before commit)."""
        if not self._f.closed:
            self._f.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


class FeatureCache:
    """A directory of entries (see the module docstring); ``max_bytes`` caps its total size."""

    def __init__(self, root: Optional[str] = None, *, max_bytes: Optional[int] = None):
        self.root = os.path.abspath(root or default_cache_dir())
        if max_bytes is None:
            max_bytes = cache_max_bytes()
        self.max_bytes = max_bytes
        self.problems: List[str] = []  # entries found damaged and removed, for the log

    @staticmethod
    def key(video_digest: str, model_digest_: str) -> str:
        h = hashlib.sha256(f"relocnet-features-v{FORMAT_VERSION}".encode())
        h.update(video_digest.encode())
        h.update(model_digest_.encode())
        return h.hexdigest()

    def path(self, key: str) -> str:
        return os.path.join(self.root, key + SUFFIX)

    def writer(self, key: str, meta: Dict[str, Any]) -> Optional[CacheWriter]:
        """A writer for ``key``, or None (and a line in ``problems``) if the cache directory
        cannot take one (not writable, not a directory, disk full)."""
        try:
            return CacheWriter(self, key, meta)
        except OSError as exc:
            self.problems.append(f"not caching features in {self.root}: {exc}")
            return None

    def lookup(self, key: str) -> Optional[CacheEntry]:
        """The verified entry of ``key``, or None (missing; damaged ones are removed)."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            entry = self._verify(path, key)
        except (OSError, ValueError) as exc:
            self.problems.append(f"ignored incomplete or damaged cache entry {path}: {exc}")
            try:
                os.remove(path)
            except OSError:
                pass
            return None
        try:
            os.utime(path)  # least recently used goes first when pruning
        except OSError:  # a read-only cache still serves its entries
            pass
        return entry

    @staticmethod
    def _verify(path: str, key: str) -> CacheEntry:
        size = os.path.getsize(path)
        tail = _LEN.size + len(END)
        with open(path, "rb") as f:
            if size < len(MAGIC) + tail or f.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a cache entry (bad start marker or too short)")
            f.seek(size - tail)
            (n,), end = _LEN.unpack(f.read(_LEN.size)), f.read(len(END))
            if end != END:
                raise ValueError("no end marker: the entry was not completely written")
            if n > size - len(MAGIC) - tail - _DIGEST:
                raise ValueError("footer length out of range")
            f.seek(size - tail - _DIGEST - n)
            raw, digest = f.read(n), f.read(_DIGEST)
            if hashlib.sha256(raw).digest() != digest:
                raise ValueError("footer checksum mismatch")
            footer = json.loads(raw)
            data_end = size - tail - _DIGEST - n
            if footer.get("key") != key or footer.get("data_end") != data_end:
                raise ValueError("footer does not match the entry")
            f.seek(0)
            h, left = hashlib.sha256(), data_end
            while left:
                block = f.read(min(_BLOCK, left))
                if not block:
                    raise ValueError("file shorter than its footer says")
                h.update(block)
                left -= len(block)
            if h.hexdigest() != footer.get("sha256"):
                raise ValueError("checksum mismatch")
        return CacheEntry(path, footer.get("meta", {}), int(footer["chunks"]), data_end)

    def prune(self, keep: str = "") -> None:
        """Remove stale temp files, then least recently used entries beyond ``max_bytes``
        (never ``keep``, the entry just written)."""
        if not os.path.isdir(self.root):
            return
        writing, entries = 0, []
        for name in os.listdir(self.root):
            p = os.path.join(self.root, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if name.startswith(TMP_PREFIX):
                if abandoned(p):  # a killed writer's left-over
                    _remove_quietly(p)
                else:  # a live writer's entry-to-be takes space too
                    writing += st.st_size
            elif name.endswith(SUFFIX) and p != keep:
                entries.append((st.st_mtime, st.st_size, p))
        if self.max_bytes is None:
            return
        total = sum(s for _, s, _ in entries) + writing + (os.path.getsize(keep) if keep else 0)
        for _, s, p in sorted(entries):
            if total <= self.max_bytes:
                break
            _remove_quietly(p)
            total -= s


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
