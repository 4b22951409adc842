"""The sampling engine behind relocnet.data.video: frames in timestamp order, samples at the
requested times, and the evidence of damage (see the module docstring of relocnet.data.video)."""
import heapq
import itertools
import math
from bisect import bisect_right, insort
from collections import deque
from typing import Iterator, List, Optional, Sequence, Tuple

import av
import cv2
import numpy as np

from .video_ts import ends_mid_packet, ts_breaks
from .video_probe import (_EPS, _OVERTAKE, _REORDER, VideoDecodeError, VideoInfo, _info, _mp4_problem,
                          _open, _origin)


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
        self.overtaken: dict = {}  # pending pts -> pictures with a later pts that came out first
        self.seeked = False  # decoding started at a seek (leading pictures may be dropped)
        self.cut_packet = ends_mid_packet(container)  # an MPEG-TS file cut inside a packet
        self.ts_breaks = (ts_breaks(container.name, stream.id)  # bytes where TS packets were lost
                          if container.format.name == "mpegts" else [])
        self.ts_lost = 0

    def time(self, pts: int) -> float:
        return float((pts - self.origin) * self.tb)

    def seek(self, seconds: float) -> None:
        self.container.seek(self.origin + int(seconds / self.tb), stream=self.stream)
        self.seeked = True

    def spoiled(self, seq: int, keyseq: int) -> bool:
        i = bisect_right(self.damage, seq) - 1
        return i >= 0 and self.damage[i] >= keyseq

    def frames(self) -> Iterator[list]:
        """[time, frame, seq, keyseq] in presentation order.

        The decoder outputs pictures in presentation order; their timestamps are only labels.
        Some files carry labels in another order than the pictures (AVI with packed B-frames:
        each picture is labelled with the pts of the packet that released it), so the k-th
        picture out of the decoder is shown at the k-th smallest timestamp, within a window of
        _REORDER pictures. A timestamp that comes out after a later one was already used is
        damage (``late``), as is a packet whose picture never comes out (``_lose``).
        """
        pending: dict = {}  # pts -> (seq, keyseq, keyframe pts, sent before any picture came out)
        times: list = []  # min-heap of the timestamps of the pictures held back
        held: deque = deque()  # [frame, seq, keyseq] of the pictures held back, in output order
        seq = keyseq = key_pts = 0
        last_t, released = -math.inf, -math.inf
        for packet in self.container.demux(self.stream):
            if packet.size and self.ts_breaks and packet.pos is not None:
                self._ts_loss(packet.pos, seq or 1, keyseq)
            if packet.size:
                seq += 1
                if packet.is_keyframe:
                    keyseq, key_pts = seq, packet.pts
                if packet.pts is not None and not packet.is_discard:
                    pending[packet.pts] = (seq, keyseq, key_pts, self.decoded == 0)
                    self.packets_end = max(self.packets_end,
                                           self.time(packet.pts + (packet.duration or 0)))
                if packet.is_corrupt:
                    self._damage(seq, keyseq)
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as exc:
                decoded = []
                self.errors.append(exc.strerror or type(exc).__name__)
                self._damage(seq, keyseq, corrupt=False)  # exact when single-threaded
            for frame in decoded:
                self.decoded += 1
                fseq, fkey = self._account(frame, pending, seq, keyseq)
                last_t = self.time(frame.pts) if frame.pts is not None else last_t + 1 / self.fps
                if frame.is_corrupt:
                    self._damage(fseq, fkey)
                heapq.heappush(times, last_t)
                held.append([frame, fseq, fkey])
                while len(held) > _REORDER:
                    released = yield from self._release(heapq.heappop(times), held.popleft(),
                                                        released)
        self._ts_loss(math.inf, seq, keyseq)
        if self.cut_packet and seq:  # the last packet is incomplete: it and what it predicts
            self._damage(seq, keyseq, corrupt=False)
        while held:
            released = yield from self._release(heapq.heappop(times), held.popleft(), released)
        for pts, entry in pending.items():  # sent but never decoded
            self._lose(pts, entry)

    def _ts_loss(self, pos: float, seq: int, keyseq: int) -> None:
        """TS packets lost before byte ``pos`` belonged to the packet demuxed last (``seq``)."""
        while self.ts_breaks and self.ts_breaks[0] < pos:
            self.ts_breaks.pop(0)
            self.ts_lost += 1
            self._damage(seq, keyseq, corrupt=False)

    def _damage(self, seq: int, keyseq: int, corrupt: bool = True) -> None:
        self.corrupt += corrupt
        self.events += keyseq > 0
        insort(self.damage, seq)

    def _release(self, t: float, item: list, released: float):
        if t > released:
            yield [t, item[0], item[1], item[2]]
            return t
        if t < released:  # a timestamp that came out after a later one was already used
            self.late.append(t)
            self.events += 1
            insort(self.damage, item[1])
        return released

    def _lose(self, pts: int, entry: tuple) -> None:
        """A picture that never came out. Leading pictures of an open GOP (shown before their
        keyframe, undecodable after a seek) spoil only their own display time; after a seek,
        pictures of packets sent before the decoder gave its first picture are leading pictures
        whatever their label (packed B-frames label them with later packets' pts): not damage."""
        self.overtaken.pop(pts, None)
        if self.seeked and entry[3]:
            return
        insort(self.lost, self.time(pts))
        if entry[2] is None or pts >= entry[2]:
            self.num_lost += 1
            self.events += entry[1] > 0
            insort(self.damage, entry[0])

    def _account(self, frame, pending: dict, seq: int, keyseq: int) -> Tuple[int, int]:
        """(seq, keyseq) of the frame's packet. A packet with an earlier pts still pending is
        lost once more than _OVERTAKE later pictures came out before it (the decoder reorders
        by itself; labels of packed B-frames trail by one picture)."""
        if frame.pts is None:
            return seq, keyseq
        fseq, fkey, _, _ = pending.pop(frame.pts, (seq, keyseq, None, False))
        for q in [q for q in pending if q < frame.pts]:
            self.overtaken[q] = self.overtaken.get(q, 0) + 1
            if self.overtaken[q] > _OVERTAKE:
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
        if dec.cut_packet and end + 1.0 >= info.duration:  # the request reaches the cut
            bad.add(int(math.floor(info.duration)))
            if threaded:
                raise _Damaged()
        if bad:
            raise _damage_error(path, info, dec, sorted(bad), state)
    finally:
        container.close()


def _damage_error(path: str, info: VideoInfo, dec: _Decoder, bad: List[int],
                  state: dict) -> VideoDecodeError:
    if dec.decoded == 0:
        return VideoDecodeError(path, f"no decodable frames: seconds {_seconds_text(bad)} could "
                                      "not be decoded", bad)
    truncated_at, gap_after = state["truncated_at"], state.get("gap_after")
    reasons = [_mp4_problem(path),
               gap_after is not None and f"frames skipped after {gap_after:.2f} s",
               truncated_at is not None
               and f"decodable frames end at {truncated_at:.2f} s of {info.duration:.2f} s",
               dec.errors and f"decoder errors: {len(dec.errors)}, e.g. '{dec.errors[0]}'",
               dec.num_lost and f"frames missing: {dec.num_lost}",
               dec.corrupt and f"packets/frames flagged corrupt: {dec.corrupt}",
               dec.late and "frames out of order",
               dec.ts_lost and f"transport-stream packets lost at {dec.ts_lost} place(s)",
               dec.cut_packet and "the file ends inside a transport-stream packet (cut short)"]
    head = "damaged" if truncated_at is None else "truncated"
    detail = "; ".join(r for r in reasons if r)
    return VideoDecodeError(path, f"{head}: seconds {_seconds_text(bad)} could not be decoded"
                                  + (f" ({detail})" if detail else ""), bad)
