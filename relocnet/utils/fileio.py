"""Files that are never half-written, locks, and clean exits on SIGTERM: one helper for the package.

- :func:`atomic_path` / :func:`atomic_open` write to ``.tmp-*`` next to the target, fsync it and
  ``os.replace`` it into place only when the writer finished without an exception, so a reader
  (and a later run) sees the old file or the new one, never a part. A kill -9 can leave the
  ``.tmp-*`` file behind; it is never read. Writers that take long hold a ``flock`` on their
  temp file, so :func:`abandoned` tells a dead writer's left-over from a live one.
- :func:`exclusive_lock` takes an ``fcntl.flock`` on a lock file; a second holder is refused with
  :class:`LockedError` (what concurrent runs on one output or one cache entry get).
- :func:`terminate_as_interrupt` turns SIGTERM (and SIGHUP) into :class:`Terminated`, a
  KeyboardInterrupt, so the ``finally`` blocks that remove temp files run as they do on Ctrl-C.
"""
import contextlib
import errno
import fcntl
import json
import os
import signal
import tempfile
import threading
from typing import Any, Iterator, Optional

__all__ = ["TMP_PREFIX", "LockedError", "Terminated", "atomic_path", "atomic_open",
           "write_json_atomic", "read_json", "exclusive_lock", "terminate_as_interrupt", "abandoned",
           "jsonable"]

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temp path next to ``path``; on success it is fsynced and renamed to ``path``,
    on any exception (also KeyboardInterrupt / Terminated) removed."""
    path = os.path.abspath(os.fspath(path))
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}-",
                               suffix=suffix or os.path.splitext(path)[1], dir=d)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
        _fsync_dir(d)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "wb", encoding: Optional[str] = None):
    """``open(path, mode)`` that replaces ``path`` only when the ``with`` block succeeds."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files; mode {mode!r} is not 'w...'")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json(path: str, error: type, **kwargs) -> Any:
    """Parsed JSON of ``path``, or ``error`` with one line naming the file: not found, a
    directory, not UTF-8, not valid JSON or nested too deeply (NaN and Infinity parse: the
    format's validator rejects them where a finite number is due).
    ``kwargs`` go to ``json.load`` (an ``object_pairs_hook`` may raise ``error`` itself)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, **kwargs)
    except error:
        raise
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a JSON file") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({' '.join(str(e).split())})") from None


def jsonable(obj):
    """Dicts with str keys, lists, and Python scalars (numpy / torch scalars via .item())."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


def write_json_atomic(path: str, data: Any, indent=None) -> None:
    """Write JSON so that a reader never sees a half-written file (temp file + rename)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(jsonable(data), f, indent=indent)


class LockedError(RuntimeError):
    """Another process holds the lock."""


@contextlib.contextmanager
def exclusive_lock(lock_path: str, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created, and removed on release) or raise
    LockedError naming ``what``. The lock dies with its process, so a killed holder never
    blocks a later run (its left-over lock file is simply locked again)."""
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(f"{what} is in use by another running process"
                              + (f" (pid {holder})" if holder else "")) from None
        try:  # the file we locked may have been removed by its previous holder meanwhile
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock_path)
        os.close(fd)  # releases the lock


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM/SIGHUP (see :func:`terminate_as_interrupt`)."""


_OWNER = [0]  # the process that turned SIGTERM into Terminated


def _raise_terminated(signum, frame):
    if os.getpid() != _OWNER[0]:  # a forked worker: die of the signal, as it would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Terminated(f"terminated by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP unwind the stack like Ctrl-C (cleanup code runs);
    the previous handlers come back afterwards. Worker processes forked meanwhile still die
    of the signal. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGHUP)
    _OWNER[0] = os.getpid()
    previous = [signal.signal(sig, _raise_terminated) for sig in sigs]
    try:
        yield
    finally:
        for sig, handler in zip(sigs, previous):
            signal.signal(sig, handler)


def abandoned(path: str) -> bool:
    """True if nobody holds a ``flock`` on ``path``: a temp file whose writer (which locks it
    while writing, see FeatureCache) has died. False while a live writer holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
