"""Video decoding that never lies: frames at a requested rate and size, streamed with PyAV.

Time 0 is the video stream's first timestamp; times are seconds of the file. Sampling at ``fps``
returns the frame *displayed* at ``start + (k + 0.5) / fps``: the last frame whose timestamp is
<= that time (real timestamps, so variable frame rate is exact). Frames are RGB uint8, resized
with ``cv2.INTER_AREA`` to ``size=(H, W)`` if given; decoding goes packet by packet (memory does
not grow with length) and seeks to the keyframe before ``start``. Rotation metadata is ignored.

Sub-clips: "second t" is [t, t + 1); at N fps it holds the frames shown at ``t + (k + 0.5) / N``,
keyframe ``keyframe_index(N)``, micro sub-clips ``micro_slices(N, num_micro)``. Only whole seconds
are sub-clips (``VideoInfo.num_seconds``); a trailing partial second is not.

``probe_video`` reads the headers and decodes the first frame only. Every problem raises
:class:`VideoDecodeError` naming the file: file not found (this error, not FileNotFoundError),
zero-byte, not a video (text, a still image, an MP4 cut before its index), no video stream,
no decodable frames, and damage part-way. For damage, ``.bad_seconds`` lists the requested
seconds with a sample that could not be decoded; frames before the first bad sample are
yielded, none after it, and the error comes once the requested span is scanned.
Decoding is frame-threaded; at the first sign of damage the span is decoded again
single-threaded so that errors are pinned to their packets. A sample is bad when

- its frame never came out of the decoder (a demuxed packet with no picture: decoder errors,
  garbage bytes), or frames came out in an impossible order;
- its frame is predicted from damage: a packet that failed to decode, was lost, or is flagged
  corrupt spoils every later packet (in decode order) up to the next keyframe. FFmpeg conceals
  such errors and outputs plausible pictures; we do not trust them;
- no frame covers it: the stream ends before the container's duration (truncation), or, in
  containers without a per-frame index (MKV, WebM, TS), no frame for max(2 frame intervals,
  0.5 s). MP4/MOV index every frame, so a long hold there is a real variable-frame-rate hold
  (missing frames show up as packets without pictures instead);
- in MPEG-TS, its packet follows lost transport packets (a continuity-counter jump or a lost
  sync byte, ``relocnet/data/video_ts.py``): FFmpeg resynchronizes and conceals such holes.

The decoder outputs pictures in presentation order; timestamps only label them: the k-th picture
out is shown at the k-th smallest timestamp (AVI with packed B-frames, as Xvid/DivX write them,
labels each picture with the pts of the packet that released it). A file whose header states
more frames than its packets hold (an AVI cut short) is read at the header's length, so the cut
is reported as truncation; an MPEG-TS file whose size is not a whole number of transport packets
was cut short, and a request that reaches its end reports the last second as bad.

Not detected: corruption the decoder accepts without error or flag (e.g. flipped bits in
residual data), holes shorter than the tolerance that an MKV/WebM demuxer skips silently, and
an MPEG-TS cut exactly at a packet boundary (the format states no length). AVI has no
presentation times: with B-frames FFmpeg starts its clock one frame late (frame k shows at
(k + 1) / fps). After a seek, pictures that the decoder drops before its first output are
leading pictures (open GOP; in packed AVI the B-frames before the keyframe), not damage; in a
packed AVI the first sample after a seek may therefore show the keyframe one frame early.
Damage is judged at the requested samples: at a low fps, a damaged frame that no sample shows
is not reported.
Falsely reported: a variable-frame-rate MKV/WebM/TS holding one frame longer than the
tolerance (those containers cannot tell a hold from a skipped hole); remux it to MP4
(``ffmpeg -i in.mkv -c copy out.mp4``) to read it.
"""
import math
import os
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .video_decode import _Damaged, _Decoder, _sample  # noqa: F401  (_Decoder: tests patch it)
from .video_probe import (SubClip, VideoDecodeError, VideoInfo, keyframe_index, micro_slices,
                          probe_video)

__all__ = ["VideoDecodeError", "VideoInfo", "SubClip", "probe_video", "iter_frames",
           "iter_subclips", "read_subclips", "keyframe_index", "micro_slices"]


# ----------------------------------------------------------------------------- public API


def _check_args(fps, size, start, end) -> Optional[Tuple[int, int]]:
    """Validate the common arguments; return size as (H, W) ints or None."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"need 0 <= start < end, got start={start!r}, end={end!r}")
    if size is None:
        return None
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be (height, width) > 0, got {size!r}")
    return h, w


def _run(path, plan, size) -> Iterator[Tuple[float, np.ndarray]]:
    """Sample fast (threaded); on damage, finish with the precise single-threaded pass."""
    path = os.fspath(path)
    done = 0
    try:
        for item in _sample(path, plan, size, threaded=True):
            yield item
            done += 1
        return
    except _Damaged:
        pass
    yield from _sample(path, plan, size, threaded=False, skip=done)


def iter_frames(path: str, fps: float, size: Optional[Tuple[int, int]] = None,
                start: float = 0.0, end: Optional[float] = None
                ) -> Iterator[Tuple[float, np.ndarray]]:
    """(t, RGB uint8 HxWx3) for t = start + (k + 0.5) / fps < min(end, duration), streamed.

    Arrays repeated for consecutive samples of the same frame are copies. Raises
    VideoDecodeError (naming the file, with .bad_seconds for damage) and ValueError for a span
    outside the video.
    """
    size = _check_args(fps, size, start, end)

    def plan(info: VideoInfo):
        stop = info.duration if end is None else min(float(end), info.duration)
        n = max(0, math.ceil((stop - start) * fps - 0.5 - 1e-9))
        if n == 0:
            raise ValueError(f"{path}: no frames to sample in [{start}, {stop}) s "
                             f"(video duration {info.duration:.3f} s)")
        return float(start), float(fps), n

    return _run(path, plan, size)


def iter_subclips(path: str, fps: int, size: Optional[Tuple[int, int]] = None,
                  start: float = 0.0, end: Optional[float] = None) -> Iterator[SubClip]:
    """1-second sub-clips for seconds floor(start) .. ceil(end) - 1 (end defaults to the
    duration), clipped to the video's whole seconds (VideoInfo.num_seconds); fps = N frames each."""
    if isinstance(fps, bool) or int(fps) != fps or fps < 1:
        raise ValueError(f"sub-clip fps must be a positive integer, got {fps!r}")
    fps, size = int(fps), _check_args(fps, size, start, end)
    first = int(math.floor(start))

    def plan(info: VideoInfo):
        stop = info.num_seconds if end is None else min(math.ceil(end), info.num_seconds)
        if stop <= first:
            raise ValueError(f"{path}: no whole seconds in [{start}, {end}) s (the video has "
                             f"{info.num_seconds} whole seconds, duration {info.duration:.3f} s)")
        return float(first), float(fps), (stop - first) * fps

    def clips() -> Iterator[SubClip]:
        frames: List[np.ndarray] = []
        second = first
        for _, frame in _run(path, plan, size):
            frames.append(frame)
            if len(frames) == fps:
                yield SubClip(second=second, frames=np.stack(frames))
                frames, second = [], second + 1

    return clips()


def read_subclips(path: str, fps: int, size: Optional[Tuple[int, int]] = None,
                  start: float = 0.0, end: Optional[float] = None) -> np.ndarray:
    """All sub-clips of iter_subclips stacked: uint8 (T, N, H, W, 3)."""
    return np.stack([clip.frames for clip in iter_subclips(path, fps, size, start, end)])
