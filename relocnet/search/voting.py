"""Temporal voting: nearest indexed seconds of each query second -> candidate (video, segment).

Query second ``i`` whose neighbour is second ``t`` of video ``v`` with similarity ``s`` votes for
the alignment ``(v, offset = t - i)``. An alignment's score is the sum over query seconds of
their best similarity within ``tolerance`` seconds of the offset (a copy played at another speed
or cut differently drifts by a few seconds), discounted by DRIFT_PENALTY per second of drift,
divided by the number of query seconds: about the mean best cosine similarity, in [0, 1]. Candidates are the best alignments, greedily, skipping those
that overlap a better one of the same video; each spans ``[offset, offset + query seconds)``
clipped to the video.
"""
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

__all__ = ["Candidate", "vote"]

DRIFT_PENALTY = 0.1  # fraction of a vote lost per second between its offset and the alignment's


@dataclass
class Candidate:
    video: int  # position in the snapshot's video list
    start: int  # first second
    end: int  # last second + 1
    score: float  # mean best similarity per query second


def _alignment_scores(offsets: np.ndarray, query_seconds: np.ndarray, sims: np.ndarray,
                      num_query: int, tolerance: int):
    """(unique offsets, their scores) of one video's votes."""
    unique = np.unique(offsets)
    drift = np.abs(offsets[None, :] - unique[:, None])  # (U, E)
    weighted = np.where(drift <= tolerance, sims[None, :] * (1 - DRIFT_PENALTY * drift), 0.0)
    best = np.zeros((len(unique), num_query), np.float32)
    for q in np.unique(query_seconds):
        best[:, q] = weighted[:, query_seconds == q].max(axis=1)
    return unique, best.sum(axis=1) / num_query


def vote(videos: np.ndarray, seconds: np.ndarray, sims: np.ndarray, lengths: Sequence[int], *,
         max_candidates: int, tolerance: int = 2) -> List[Candidate]:
    """Candidates from the (Q, k) neighbour arrays of Q query seconds (video -1: no neighbour);
    ``lengths[v]``: seconds of video v."""
    num_query = videos.shape[0]
    q_index = np.repeat(np.arange(num_query), videos.shape[1])
    v, t, s = videos.ravel(), seconds.ravel(), np.maximum(sims.ravel(), 0.0)
    keep = v >= 0
    v, t, s, q_index = v[keep], t[keep], s[keep], q_index[keep]
    scored = []
    for video in np.unique(v):
        sel = v == video
        offsets, scores = _alignment_scores(t[sel] - q_index[sel], q_index[sel], s[sel],
                                            num_query, tolerance)
        scored += [(float(sc), int(video), int(o)) for o, sc in zip(offsets, scores)]
    scored.sort(key=lambda x: (-x[0], x[1], x[2]))
    out: List[Candidate] = []
    for score, video, offset in scored:
        start = max(0, offset)
        end = min(int(lengths[video]), offset + num_query)
        if end <= start or any(c.video == video and c.start < end and start < c.end
                               for c in out):
            continue
        out.append(Candidate(video, start, end, score))
        if len(out) == max_candidates:
            break
    return out
