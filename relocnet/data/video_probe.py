"""Video files: the one error type, stream facts, opening and probing (see relocnet.data.video)."""
import math
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional, Sequence

import av
import numpy as np

__all__ = ["VideoDecodeError", "VideoInfo", "SubClip", "probe_video", "keyframe_index", "micro_slices"]

_REORDER = 6  # decoded frames held back before sampling, to catch out-of-order output
_OVERTAKE = 2  # later pictures that may come out before a packet's own (packed B-frames: 1)
_PROBE_PACKETS = 64  # probe_video gives up if none of the first packets decodes
_EPS = 1e-6  # seconds: a frame whose timestamp is within this of a sample time is shown at it


class VideoDecodeError(RuntimeError):
    """A video that cannot be (fully) decoded; ``.path``, ``.bad_seconds`` (sorted, maybe empty)."""

    def __init__(self, path: str, problem: str = "", bad_seconds: Sequence[int] = ()):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.bad_seconds = sorted(set(int(s) for s in bad_seconds))

    def __reduce__(self):  # survives pickling (DataLoader workers, process pools)
        return type(self), (self.path, self.problem, self.bad_seconds)


@dataclass(frozen=True)
class VideoInfo:
    """What probe_video learns: duration (s), average native fps, frame size, frame count, codec."""

    path: str
    duration: float
    fps: float
    width: int
    height: int
    num_frames: int
    codec: str

    @property
    def num_seconds(self) -> int:
        """Whole 1-second sub-clips: seconds t with t + 1 <= duration (half a frame of slack)."""
        return max(0, int(math.floor(self.duration + 0.5 / self.fps + 1e-9)))


@dataclass(frozen=True)
class SubClip:
    """The 1-second sub-clip ``second`` of a video: frames (N, H, W, 3) uint8 RGB."""

    second: int
    frames: np.ndarray


def keyframe_index(n: int) -> int:
    """Index of the keyframe (centre frame) in a sub-clip of n frames."""
    if n < 1:
        raise ValueError(f"a sub-clip needs at least 1 frame, got {n}")
    return n // 2


def micro_slices(n: int, num_micro: int) -> List[slice]:
    """The micro sub-clips of an n-frame sub-clip: np.array_split(range(n), num_micro) as slices."""
    if num_micro < 1 or n < num_micro:
        raise ValueError(f"cannot split {n} frames into {num_micro} non-empty micro sub-clips")
    parts = np.array_split(np.arange(n), num_micro)
    return [slice(int(p[0]), int(p[-1]) + 1) for p in parts]


# ----------------------------------------------------------------------------- opening


def _mp4_problem(path: str) -> Optional[str]:
    """Why an ISO-BMFF (MP4/MOV) file's top-level box structure is broken, or None."""
    size = os.path.getsize(path)
    seen, pos = set(), 0
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return None
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            box, kind = struct.unpack(">I4s", head[:8])
            if box == 1 and len(head) == 16:
                box = struct.unpack(">Q", head[8:16])[0]
            elif box == 0:
                box = size - pos
            if box < 8:
                return f"corrupt MP4 box structure at byte {pos}"
            if pos + box > size:
                missing = "" if b"moov" in seen else " and its 'moov' index is missing"
                return (f"truncated MP4: box '{kind.decode('latin-1')}' at byte {pos} needs "
                        f"{box} bytes but only {size - pos} remain{missing}")
            seen.add(kind)
            pos += box
    if b"moov" not in seen:
        return "incomplete MP4: no 'moov' index (cut short or never finished writing)"
    return None


def _open(path: str, threaded: bool = True):
    """(container, video stream) or VideoDecodeError naming the file and the problem."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found")
    if not os.path.isfile(path):
        raise VideoDecodeError(path, "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "zero-byte file")
    try:
        container = av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        hint = _mp4_problem(path)
        raise VideoDecodeError(path, hint or f"not a video: FFmpeg cannot read it ({exc.strerror})")
    fmt = container.format.name
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, f"no video stream (container format {fmt})")
    if fmt.endswith("_pipe") or fmt in ("image2", "tty"):
        container.close()
        raise VideoDecodeError(path, f"not a video: FFmpeg reads it as a still image ({fmt})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO" if threaded else "NONE"
    return container, stream


def _origin(stream) -> int:
    return stream.start_time if stream.start_time is not None else 0


def _info(path: str, container, stream) -> VideoInfo:
    tb = stream.time_base or Fraction(1, 1)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if stream.duration:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base  # FFmpeg: end - start of the file
    else:  # no duration in the headers: demux (without decoding) to the last timestamp
        end = None
        for pkt in container.demux(stream):
            if pkt.pts is not None:
                stop = pkt.pts + (pkt.duration or 0)
                end = stop if end is None else max(end, stop)
        container.seek(0)
        duration = float((end - _origin(stream)) * tb) if end is not None else 0.0
    if duration <= 0:
        raise VideoDecodeError(path, "no video frames (the video stream is empty)")
    fps = float(rate) if rate else (stream.frames / duration if stream.frames else 25.0)
    if rate and stream.frames and stream.frames / fps > duration + 1.5 / fps:
        # the header's frame count (AVI, MP4) outlasts the packets FFmpeg found (a file cut
        # short without its index): the header's length is the one the file claims to have
        duration = stream.frames / fps
    num_frames = stream.frames or int(round(duration * fps))
    ctx = stream.codec_context
    return VideoInfo(path=path, duration=duration, fps=fps, width=ctx.width, height=ctx.height,
                     num_frames=num_frames, codec=ctx.name)


def probe_video(path: str) -> VideoInfo:
    """Stream facts of ``path``, after decoding its first frame; VideoDecodeError if that fails."""
    path = os.fspath(path)
    container, stream = _open(path, threaded=False)
    try:
        info = _info(path, container, stream)
        i = -1
        for i, packet in enumerate(container.demux(stream)):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                frames = []
            if frames:
                frame = frames[0]
                return VideoInfo(path=path, duration=info.duration, fps=info.fps, width=frame.width,
                                 height=frame.height, num_frames=info.num_frames, codec=info.codec)
            if i >= _PROBE_PACKETS:
                break
        raise VideoDecodeError(path, f"no decodable frames (none in the first {i + 1} packets)")
    finally:
        container.close()
