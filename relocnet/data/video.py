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
  (missing frames show up as packets without pictures instead).

Not detected: corruption the decoder accepts without error or flag (e.g. flipped bits in
residual data), holes shorter than the tolerance that an MKV/TS demuxer skips silently, and
truncation of a file whose header carries no duration (MPEG-TS). Damage is judged at the
requested samples: at a low fps, a damaged frame that no sample shows is not reported.
Falsely reported: a variable-frame-rate MKV/WebM/TS holding one frame longer than the
tolerance (those containers cannot tell a hold from a skipped hole); remux it to MP4
(``ffmpeg -i in.mkv -c copy out.mp4``) to read it.
"""
import heapq
import itertools
import math
import os
import struct
from bisect import bisect_right, insort
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, List, Optional, Sequence, Tuple

import av
import cv2
import numpy as np

__all__ = ["VideoDecodeError", "VideoInfo", "SubClip", "probe_video", "iter_frames",
           "iter_subclips", "read_subclips", "keyframe_index", "micro_slices"]

_REORDER = 6  # decoded frames held back before sampling, to catch out-of-order output
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


# ----------------------------------------------------------------------------- decoding


class _Damaged(Exception):
    """Internal: the fast (threaded) pass met damage; rerun single-threaded to pin it down."""


class _Decoder:
    """Frames of one stream in timestamp order, with the evidence of damage.

    Each frame carries the demux sequence number of its packet and of the last keyframe packet
    before it; a damaged packet at sequence d spoils every frame with keyseq <= d <= seq.
    """

    def __init__(self, container, stream, fps: float):
        self.container, self.stream, self.fps = container, stream, fps
        self.tb, self.origin = stream.time_base, _origin(stream)
        self.damage: List[int] = []  # sorted packet sequence numbers of damage
        self.lost: List[float] = []  # sorted times of demuxed packets whose picture never came out
        self.late: List[float] = []  # times of frames that came out after later frames were used
        self.errors: List[str] = []  # decoder error messages
        self.corrupt = self.num_lost = self.decoded = 0
        self.events = 0  # signs of damage after the first keyframe (before it they are expected)
        self.packets_end = -math.inf  # latest pts + duration of the packets demuxed so far

    def time(self, pts: int) -> float:
        return float((pts - self.origin) * self.tb)

    def seek(self, seconds: float) -> None:
        self.container.seek(self.origin + int(seconds / self.tb), stream=self.stream)

    def spoiled(self, seq: int, keyseq: int) -> bool:
        i = bisect_right(self.damage, seq) - 1
        return i >= 0 and self.damage[i] >= keyseq

    def frames(self) -> Iterator[list]:
        """[time, frame, seq, keyseq] in timestamp order."""
        pending: dict = {}  # pts -> (seq, keyseq, keyframe pts) of packets not decoded yet
        heap: list = []
        seq = keyseq = key_pts = 0
        last_t, released = -math.inf, -math.inf
        for packet in self.container.demux(self.stream):
            if packet.size:
                seq += 1
                if packet.is_keyframe:
                    keyseq, key_pts = seq, packet.pts
                if packet.pts is not None and not packet.is_discard:
                    pending[packet.pts] = (seq, keyseq, key_pts)
                    self.packets_end = max(self.packets_end,
                                           self.time(packet.pts + (packet.duration or 0)))
                if packet.is_corrupt:
                    self.corrupt += 1
                    self.events += keyseq > 0
                    insort(self.damage, seq)
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                decoded = []
                self.errors.append(exc.strerror or type(exc).__name__)
                self.events += keyseq > 0
                insort(self.damage, seq)  # exact when single-threaded
            for frame in decoded:
                self.decoded += 1
                fseq, fkey = self._account(frame, pending, seq, keyseq)
                last_t = self.time(frame.pts) if frame.pts is not None else last_t + 1 / self.fps
                if frame.is_corrupt:
                    self.corrupt += 1
                    self.events += fkey > 0
                    insort(self.damage, fseq)
                heapq.heappush(heap, [last_t, self.decoded, frame, fseq, fkey])
                while len(heap) > _REORDER:
                    released = yield from self._release(heapq.heappop(heap), released)
        while heap:
            released = yield from self._release(heapq.heappop(heap), released)
        for pts, entry in pending.items():  # sent but never decoded
            self._lose(pts, entry)

    def _release(self, item: list, released: float):
        if item[0] > released:
            yield [item[0], item[2], item[3], item[4]]
            return item[0]
        if item[0] < released:  # came out after a later frame was already used
            self.late.append(item[0])
            self.events += 1
            insort(self.damage, item[3])
        return released

    def _lose(self, pts: int, entry: tuple) -> None:
        """A picture that never came out. Leading pictures of an open GOP (shown before their
        keyframe, undecodable after a seek) spoil only their own display time."""
        insort(self.lost, self.time(pts))
        if entry[2] is None or pts >= entry[2]:
            self.num_lost += 1
            self.events += entry[1] > 0
            insort(self.damage, entry[0])

    def _account(self, frame, pending: dict, seq: int, keyseq: int) -> Tuple[int, int]:
        """(seq, keyseq) of the frame's packet; packets with earlier pts still pending are lost."""
        if frame.pts is None:
            return seq, keyseq
        fseq, fkey, _ = pending.pop(frame.pts, (seq, keyseq, None))
        for q in [q for q in pending if q < frame.pts]:
            self._lose(q, pending.pop(q))
        return fseq, fkey


def _rgb(frame, size: Optional[Tuple[int, int]]) -> np.ndarray:
    arr = frame.reformat(format="rgb24").to_ndarray()
    if size is not None and arr.shape[:2] != tuple(size):
        arr = cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def _seconds_text(seconds: Sequence[int]) -> str:
    """[2, 3, 4, 7] -> '2-4, 7'."""
    groups = itertools.groupby(enumerate(seconds), lambda x: x[1] - x[0])
    runs = [[s for _, s in g] for _, g in groups]
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _frames_from(container, stream, fps: float, start: float, first_sample: float):
    """(decoder, its frames) from a keyframe at or before ``first_sample`` (seeks if start > 0)."""
    target, seeked = start, False
    while True:
        dec = _Decoder(container, stream, fps)
        if target > 0 or seeked:
            dec.seek(target)
            seeked = True
        frames = dec.frames()
        if target <= 0:
            return dec, frames
        first = next(frames, None)
        if first is not None and first[0] <= first_sample + _EPS:
            return dec, itertools.chain([first], frames)
        frames.close()  # the seek landed after the first sample (or on damage): go back further
        gap = (first[0] - target) if first is not None else 0.0
        target = max(0.0, target - max(1.0, 2.0 * gap))


def _sample(path: str, plan, size, threaded: bool, skip: int = 0
            ) -> Iterator[Tuple[float, np.ndarray]]:
    """Yield (t, frame) for t = start + (k + 0.5) / fps, k < n, from ``plan(info)``.

    threaded: the fast pass; raises _Damaged at the first sign of damage. Otherwise the precise
    pass: samples k < skip are checked but not yielded; VideoDecodeError lists the bad seconds.
    """
    container, stream = _open(path, threaded)
    try:
        info = _info(path, container, stream)
        start, fps, n = plan(info)
        first_sample = start + 0.5 / fps
        dec, frames = _frames_from(container, stream, info.fps, start, first_sample)
        gap_tol = max(2.0 / info.fps, 0.5)
        indexed = stream.frames > 0  # the container lists every frame (MP4/MOV): holds are real
        bad: set = set()
        state = {"truncated_at": None}
        cur = None  # [time, frame, seq, keyseq, rgb or None, times yielded]
        k = 0

        def sample_ok(tk: float, following: Optional[float]) -> bool:
            if cur is None:
                return False
            if following is None:  # the stream has ended: did its packets reach this far?
                shown_until = max(cur[0] + 1.0 / info.fps, dec.packets_end)
                if tk > shown_until + 0.5 / info.fps:
                    state["truncated_at"] = shown_until
                    return False
            elif not indexed and tk - cur[0] > gap_tol:
                state.setdefault("gap_after", cur[0])
                return False
            i = bisect_right(dec.lost, cur[0])
            return not dec.spoiled(cur[2], cur[3]) and not (i < len(dec.lost)
                                                             and dec.lost[i] <= tk + _EPS)

        def emit(following: Optional[float]):
            nonlocal k
            while k < n:
                tk = start + (k + 0.5) / fps
                if following is not None and tk + _EPS >= following:
                    return
                if not sample_ok(tk, following):
                    if threaded:
                        raise _Damaged()
                    bad.add(int(math.floor(tk)))
                elif not bad and k >= skip:
                    if cur[4] is None:
                        cur[4] = _rgb(cur[1], size)
                    cur[5] += 1
                    yield tk, (cur[4] if cur[5] == 1 else cur[4].copy())
                k += 1

        for t, frame, seq, keyseq in frames:
            if threaded and dec.events:
                raise _Damaged()
            if cur is None and t - first_sample <= 1.0 / info.fps:  # first frame, a bit late
                cur = [t, frame, seq, keyseq, None, 0]
                continue
            yield from emit(t)
            if k >= n:
                break
            cur = [t, frame, seq, keyseq, None, 0]
        else:
            yield from emit(None)
        end = start + n / fps
        bad.update(int(math.floor(t)) for t in dec.late if start <= t < end)
        if bad:
            raise _damage_error(path, info, dec, sorted(bad), state)
    finally:
        container.close()


def _damage_error(path: str, info: VideoInfo, dec: _Decoder, bad: List[int],
                  state: dict) -> VideoDecodeError:
    if dec.decoded == 0:
        return VideoDecodeError(path, "no decodable frames", bad)
    truncated_at, gap_after = state["truncated_at"], state.get("gap_after")
    reasons = [_mp4_problem(path),
               gap_after is not None and f"frames skipped after {gap_after:.2f} s",
               truncated_at is not None
               and f"decodable frames end at {truncated_at:.2f} s of {info.duration:.2f} s",
               dec.errors and f"decoder errors: {len(dec.errors)}, e.g. '{dec.errors[0]}'",
               dec.num_lost and f"frames missing: {dec.num_lost}",
               dec.corrupt and f"packets/frames flagged corrupt: {dec.corrupt}",
               dec.late and "frames out of order"]
    head = "damaged" if truncated_at is None else "truncated"
    detail = "; ".join(r for r in reasons if r)
    return VideoDecodeError(path, f"{head}: seconds {_seconds_text(bad)} could not be decoded"
                                  + (f" ({detail})" if detail else ""), bad)


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
