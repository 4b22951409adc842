"""Coarse-to-fine search of a query in an indexed archive.

1. coarse: the query's per-second descriptors (descriptors.py) -> ``neighbors`` nearest indexed
   seconds each (FAISS) -> temporal voting (voting.py) -> the ``candidates`` best (video, segment);
2. fine: each candidate's span, widened by ``margin`` seconds on both sides, is decoded and
   re-localized by the correlation model (``inference_one``, the model's own inference); the
   candidate's hit is the fine stage's best segment, scored by the mean match probability of its
   seconds, and ``found`` when that reaches the model's ``match_threshold`` (0.5 by default).

Hits are ranked across the archive by that score (by the coarse score without the fine stage);
a hit that repeats a better one (same video, tIoU >= 0.5) is dropped.
"""
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..data.video import VideoDecodeError, read_subclips
from ..evaluation.metrics import tiou
from .descriptors import frames_descriptors
from .faiss_index import unpack_ids
from .snapshot import Snapshot
from .voting import Candidate, vote

__all__ = ["Hit", "query_descriptors", "coarse_candidates", "fine_hit", "best_segment",
           "search_archive"]


@dataclass
class Hit:
    video: str
    start: float
    end: float
    score: float  # fine: mean match probability of the segment's seconds; coarse: similarity
    found: Optional[bool]  # None without the fine stage
    coarse_score: float
    candidate: Tuple[int, int]  # the coarse stage's segment
    seconds: List[int] = field(default_factory=list)  # the fine stage's span...
    second_scores: List[float] = field(default_factory=list)  # ...and its per-second scores

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def query_descriptors(model, query: Dict[str, Any]) -> np.ndarray:
    """(seconds, dim) descriptors of the valid seconds of prepare_query's inputs."""
    n = int(query["query_valid"].sum())
    return frames_descriptors(model, query["query"][:n])


def coarse_candidates(snapshot: Snapshot, qdesc: np.ndarray, *, neighbors: int,
                      candidates: int, tolerance: int = 2) -> List[Candidate]:
    """The voted candidates of a query's descriptors in the snapshot."""
    if snapshot.index.ntotal == 0:
        return []
    k = min(neighbors, int(snapshot.index.ntotal))
    sims, ids = snapshot.index.search(np.ascontiguousarray(qdesc, dtype=np.float32), k)
    videos, seconds = unpack_ids(ids)
    lengths = [v["seconds"] for v in snapshot.videos]
    return vote(videos, seconds, sims, lengths, max_candidates=candidates, tolerance=tolerance)


@torch.no_grad()
def fine_hit(model, query: Dict[str, Any], path: str, length: int, cand: Candidate, *,
             fps: int, size: Tuple[int, int], margin: int) -> Hit:
    """Re-localize the query in the candidate's span (+ margin) of the video ``path``."""
    need = int(query["query_valid"].sum())
    s0, s1 = max(0, cand.start - margin), min(length, cand.end + margin)
    if s1 - s0 < need:  # the model needs a reference at least as long as the query
        s0, s1 = max(0, min(s0, length - need)), min(length, max(s1, s0 + need))
    frames = read_subclips(path, fps, size, s0, s1)
    seconds = torch.arange(s0, s0 + len(frames))
    out = model.inference_one(dict(query, pair_id="fine", reference=torch.from_numpy(frames),
                                   reference_seconds=seconds))
    start, end, prob = best_segment(out)
    return Hit(path, start, end, prob, prob >= float(getattr(model, "match_threshold", 0.5)),
               cand.score, (cand.start, cand.end), seconds.tolist(),
               [round(float(x), 4) for x in out["second_scores"]])


def best_segment(outputs: Dict[str, torch.Tensor]) -> Tuple[float, float, float]:
    """(start, end, match probability) of the model's best segment (of the whole span when the
    decoder returned none): the model's ``segment_probabilities`` where it gives them, else the
    mean score of the segment's seconds."""
    scores, seconds = outputs["second_scores"], outputs["seconds"]
    if len(outputs["segment_scores"]):
        best = int(outputs["segment_scores"].argmax())
        start, end = (float(x) for x in outputs["segments"][best])
        if "segment_probabilities" in outputs:  # the model's own probability of the segment
            return start, end, float(outputs["segment_probabilities"][best])
    else:
        start, end = float(seconds[0]), float(seconds[-1]) + 1
    inside = (seconds >= start) & (seconds < end)
    return start, end, float(scores[inside].mean()) if bool(inside.any()) else float(scores.max())


def _distinct(hits: List[Hit]) -> List[Hit]:
    """Hits ranked best first without those that repeat a better one (same video, tIoU >= 0.5):
    neighbouring candidates, once widened, can lead the fine stage to the same segment."""
    out: List[Hit] = []
    for h in hits:
        if not any(o.video == h.video and tiou((o.start, o.end), (h.start, h.end)) >= 0.5
                   for o in out):
            out.append(h)
    return out


def search_archive(model, query: Dict[str, Any], snapshot: Snapshot, *, fps: int,
                   size: Tuple[int, int], neighbors: int = 100, candidates: int = 5,
                   margin: int = 3, fine: bool = True, notes: Optional[List[str]] = None
                   ) -> Tuple[List[Hit], Dict[str, float]]:
    """Ranked hits of the query (prepare_query's inputs) in the archive, and timings (s)."""
    t0 = time.perf_counter()
    qdesc = query_descriptors(model, query)
    t1 = time.perf_counter()
    cands = coarse_candidates(snapshot, qdesc, neighbors=neighbors, candidates=candidates)
    t2 = time.perf_counter()
    hits: List[Hit] = []
    for c in cands:
        video = snapshot.videos[c.video]
        if not fine:
            hits.append(Hit(video["path"], float(c.start), float(c.end), c.score, None, c.score,
                            (c.start, c.end)))
            continue
        try:
            hits.append(fine_hit(model, query, video["path"], video["seconds"], c, fps=fps,
                                 size=size, margin=margin))
        except (VideoDecodeError, OSError, ValueError) as exc:
            if notes is not None:
                notes.append(f"candidate {video['path']} [{c.start}, {c.end}) skipped: {exc}")
    hits = _distinct(sorted(hits, key=lambda h: -h.score))
    timings = {"query_descriptors": t1 - t0, "coarse": t2 - t1,
               "fine": time.perf_counter() - t2}
    return hits, timings
