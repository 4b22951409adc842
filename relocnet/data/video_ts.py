"""MPEG transport streams: damage that FFmpeg's demuxer hides (see relocnet.data.video).

A TS file is a sequence of fixed-size packets (188 bytes; 192 in M2TS, 204 with FEC bytes),
each with the PID of its stream and a 4-bit continuity counter (CC) that grows by one per packet
carrying payload. FFmpeg resynchronizes silently after lost or overwritten packets, and the video
decoder conceals the loss: the only evidence is a CC jump or a lost sync byte, which this module
finds with a vectorized scan of the file (memory-mapped, a few ms per MB).
"""
import os
from typing import List

import numpy as np

__all__ = ["ts_packet_size", "ends_mid_packet", "ts_breaks"]

_SYNC = 0x47
_SIZES = (188, 192, 204)


def ts_packet_size(data: np.ndarray) -> int:
    """The packet size (188, 192 or 204 bytes) of a TS file's first packets, or 0."""
    for size in _SIZES:
        off = 4 if size == 192 else 0
        head = data[off:off + size * 8:size]
        if len(head) >= 2 and np.all(head == _SYNC):
            return size
    return 0


def ends_mid_packet(container) -> bool:
    """True for an MPEG-TS file whose size is no whole number of 188/192/204-byte packets:
    it was cut short (the format has no header that states its length)."""
    if container.format.name != "mpegts":
        return False
    try:
        size = os.path.getsize(container.name)
    except (OSError, TypeError):
        return False
    return all(size % n for n in _SIZES)


def _runs(data: np.ndarray, size: int, off: int):
    """(start, number of packets) of each run of packets in sync; a new run follows a loss."""
    pos = 0
    while pos + size <= len(data):
        sync = data[pos + off::size] == _SYNC
        n = int(np.argmin(sync)) if not sync.all() else len(sync)
        n = min(n, (len(data) - pos) // size)
        if n:
            yield pos, n
        pos += n * size
        # resync: the next place with sync bytes one and two packets further on
        cand = np.flatnonzero(data[pos + off + 1:] == _SYNC) + pos + off + 1
        ok = [c for c in cand[:4096] if c + 2 * size < len(data)
              and data[c + size] == _SYNC and data[c + 2 * size] == _SYNC]
        if not ok:
            return
        pos = int(ok[0]) - off


def ts_breaks(path: str, pid: int) -> List[int]:
    """Byte positions in the TS file ``path`` where packets of ``pid`` were lost: a CC jump
    (not flagged as a discontinuity) or a loss of sync. [] for files that are not TS."""
    data = np.memmap(path, np.uint8, mode="r")
    size = ts_packet_size(data)
    if not size:
        return []
    off = 4 if size == 192 else 0
    breaks: List[int] = []
    for first, (start, n) in enumerate(_runs(data, size, off)):
        if first:
            breaks.append(start)
        pk = np.asarray(data[start:start + n * size]).reshape(n, size)[:, off:]
        mine = (((pk[:, 1] & 0x1F).astype(np.int32) << 8) | pk[:, 2]) == pid
        payload = (pk[:, 3] & 0x10) > 0
        discont = ((pk[:, 3] & 0x20) > 0) & (pk[:, 4] > 0) & ((pk[:, 5] & 0x80) > 0)
        idx = np.flatnonzero(mine & payload)
        if len(idx) < 2:
            continue
        step = (pk[idx[1:], 3].astype(np.int32) - pk[idx[:-1], 3]) & 0xF
        bad = idx[1:][(step != 1) & (step != 0) & ~discont[idx[1:]]]
        breaks += [start + int(i) * size for i in bad]
    return sorted(breaks)
