"""From per-second match scores to scored temporal segments (MODEL.RELOC.DECODER).

A segment is ``[s, e]`` in absolute seconds of the video file: it starts at the first matched
second's sub-clip and ends where the last matched second's sub-clip ends, so
``[first_second, last_second + 1]``.

The rules are classes in ``DECODER_REGISTRY``, picked by ``MODEL.RELOC.DECODER.NAME``
(``build_decoder``); each is a plain function below, wrapped by its class:

- ``PaperDecoder`` (§4.1): one segment from the first to the last second whose score exceeds the
  threshold, scored by the mean score of all seconds inside it. When no second exceeds the
  threshold, the single best second.
- ``RunsDecoder``: every maximal run of consecutive seconds above the threshold is a candidate;
  runs are ranked by the area of the score curve above the threshold, ``sum(score - thr)``
  over the run, and the best ``TOP_K`` are returned. Why this score: the mean favours one-second
  spikes (usually false positives: a 1 s run at 0.95 would beat a 20 s run at 0.9), the plain sum
  favours long runs that barely pass the threshold; the area above the threshold grows with both
  length and confidence and is the only one of the three that does not let either alone win.
  The paper's rule glues distant false positives to the true action into one long segment; the
  runs rule keeps them apart and ranks them. When no run exists, the best second alone is
  returned, with the same score formula (then <= 0).
- ``AlignmentDecoder`` (temporal model with QUERY_POOLING "seconds"): the query's V seconds are laid
  along the reference in order, one segment per start second o, ``[o, o + V)``, scored by the
  mean match probability of the aligned (reference second o + i, query second i) pairs: the
  diagonal of the (reference second x query second) probability matrix. The best ``TOP_K``
  non-overlapping alignments are returned. Unlike a per-second threshold, it uses the query's
  length and order: seconds next to a copy that look like *some* query second (the same shot a
  moment earlier) do not extend the segment, and the score is itself a probability.
- ``MaxSumDecoder``: the segment whose sum of ``score - tau`` is largest (the maximum-sum subarray),
  then the next best among the seconds left, up to ``TOP_K``; scored by that sum. The level is
  relative to the pair: ``tau = median + THRESHOLD * (max - median)`` of the reference's scores,
  because how high a reference's ordinary seconds score depends on the query (a query whose
  poses are common scores high everywhere). Like ``RunsDecoder`` it finds the length from the scores
  (an action in the reference may last longer or shorter than the query, unlike
  ``AlignmentDecoder``'s fixed length), but a second that dips under the level inside a strong run
  does not cut it in two.
"""
from typing import Optional, Sequence, Tuple

import torch
from detectron2.utils.registry import Registry

__all__ = ["DECODER_REGISTRY", "SegmentDecoder", "PaperDecoder", "RunsDecoder", "MaxSumDecoder",
           "AlignmentDecoder", "build_decoder", "decode_paper", "decode_runs", "decode_alignment",
           "decode_max_sum"]

DECODER_REGISTRY = Registry("RELOC_DECODER")
DECODER_REGISTRY.__doc__ = """Rules from per-second scores to ranked segments
(MODEL.RELOC.DECODER.NAME): (T,) scores, (T,) seconds -> segments (K, 2), scores (K,)."""


def _check(scores: torch.Tensor, seconds: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    scores = torch.as_tensor(scores, dtype=torch.float32).flatten()
    seconds = torch.as_tensor(seconds, dtype=torch.long).flatten()
    if scores.numel() == 0 or scores.shape != seconds.shape:
        raise ValueError(
            f"decoding needs one score per second and at least one second; got scores of shape "
            f"{tuple(scores.shape)} and seconds of shape {tuple(seconds.shape)}"
        )
    return scores, seconds


def _segments(pairs: Sequence[Tuple[int, int]], values: Sequence[float], seconds: torch.Tensor):
    """(K, 2) float segments [seconds[i], seconds[j] + 1] and (K,) scores for index runs (i, j)."""
    segs = torch.tensor(
        [[float(seconds[i]), float(seconds[j]) + 1.0] for i, j in pairs], dtype=torch.float32
    ).reshape(-1, 2)
    return segs, torch.tensor(list(values), dtype=torch.float32)


def decode_paper(
    scores: torch.Tensor, seconds: torch.Tensor, *, threshold: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The paper's rule: first to last second above ``threshold``; score = mean inside."""
    scores, seconds = _check(scores, seconds)
    above = torch.nonzero(scores > threshold).flatten()
    if above.numel() == 0:
        best = int(torch.argmax(scores))
        return _segments([(best, best)], [float(scores[best])], seconds)
    i, j = int(above[0]), int(above[-1])
    return _segments([(i, j)], [float(scores[i : j + 1].mean())], seconds)


def decode_runs(
    scores: torch.Tensor, seconds: torch.Tensor, *, threshold: float, top_k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Maximal runs of consecutive seconds above ``threshold``, best ``top_k`` by area above it.

    A run breaks where the score drops to the threshold or below, and where ``seconds`` skips a
    second. Ties keep the earlier run first.
    """
    if top_k < 1:
        raise ValueError(f"DECODER.TOP_K must be >= 1, got {top_k}")
    scores, seconds = _check(scores, seconds)
    excess = (scores - threshold).tolist()
    runs, start = [], None
    for k in range(len(excess) + 1):
        inside = k < len(excess) and excess[k] > 0
        if inside and start is not None and int(seconds[k]) != int(seconds[k - 1]) + 1:
            runs.append((start, k - 1))
            start = None
        if inside and start is None:
            start = k
        elif not inside and start is not None:
            runs.append((start, k - 1))
            start = None
    if not runs:
        best = int(torch.argmax(scores))
        return _segments([(best, best)], [excess[best]], seconds)
    areas = [sum(excess[i : j + 1]) for i, j in runs]
    order = sorted(range(len(runs)), key=lambda r: -areas[r])[:top_k]  # stable: ties by start
    return _segments([runs[r] for r in order], [areas[r] for r in order], seconds)


def decode_alignment(
    pair_scores: torch.Tensor, seconds: torch.Tensor, *, top_k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best ``top_k`` non-overlapping in-order alignments of the query's seconds (columns of the
    (T, V) probability matrix) with consecutive reference seconds; score: the diagonal's mean.
    A query longer than the reference aligns its first T seconds."""
    if top_k < 1:
        raise ValueError(f"DECODER.TOP_K must be >= 1, got {top_k}")
    p = torch.as_tensor(pair_scores, dtype=torch.float32)
    _, seconds = _check(p.amax(dim=1) if p.dim() == 2 else p, seconds)
    t, v = p.shape[0], min(p.shape[1], p.shape[0])
    idx = torch.arange(v)
    diag = torch.stack([p[o + idx, idx].mean() for o in range(t - v + 1)])
    picked: list = []
    for o in torch.argsort(diag, descending=True, stable=True).tolist():
        if all(o + v <= q or q + v <= o for q in picked):
            picked.append(o)
        if len(picked) == top_k:
            break
    return _segments([(o, o + v - 1) for o in picked], [float(diag[o]) for o in picked], seconds)


def _max_subarray(x: Sequence[float]) -> Tuple[float, int, int]:
    """(sum, i, j) of the contiguous run x[i..j] of largest sum (Kadane); ties keep the earliest."""
    best, start, cur = (x[0], 0, 0), 0, 0.0
    for k, v in enumerate(x):
        if k == 0 or cur <= 0:
            cur, start = v, k
        else:
            cur += v
        if cur > best[0]:
            best = (cur, start, k)
    return best


def decode_max_sum(
    scores: torch.Tensor, seconds: torch.Tensor, *, threshold: float, top_k: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best ``top_k`` disjoint segments by the sum of ``score - tau``, ``tau = median + threshold
    * (max - median)`` (maximum-sum subarrays, taken greedily); a segment never spans a skipped
    second."""
    if top_k < 1:
        raise ValueError(f"DECODER.TOP_K must be >= 1, got {top_k}")
    scores, seconds = _check(scores, seconds)
    median = float(scores.median())
    tau = median + threshold * (float(scores.max()) - median)
    excess = (scores - tau).tolist()
    blocks, start = [], 0  # runs of consecutive seconds
    for k in range(1, len(excess) + 1):
        if k == len(excess) or int(seconds[k]) != int(seconds[k - 1]) + 1:
            blocks.append((start, k))
            start = k
    picked: list = []
    while len(picked) < top_k and blocks:
        found = [(_max_subarray(excess[a:b]), a, b) for a, b in blocks]
        (value, i, j), a, b = max(found, key=lambda f: f[0][0])
        picked.append((a + i, a + j, value))
        blocks.remove((a, b))
        blocks += [blk for blk in ((a, a + i), (a + j + 1, b)) if blk[1] > blk[0]]
    return _segments([(i, j) for i, j, _ in picked], [v for _, _, v in picked], seconds)


class SegmentDecoder:
    """A decoder: ``decoder(scores, seconds, pair_scores=None) -> (segments (K, 2), scores (K,))``.

    Attributes:
        scores_are_probabilities: its segment scores are match probabilities already (else a
            segment's probability is its best second's score).
        ranking: what a segment's ranking score is, in words (the report says it).
    """

    scores_are_probabilities = False
    ranking = ""

    def __init__(self, *, threshold: float, top_k: int):
        if top_k < 1:
            raise ValueError(f"DECODER.TOP_K must be >= 1, got {top_k}")
        self.threshold = float(threshold)
        self.top_k = int(top_k)

    def __call__(self, scores: torch.Tensor, seconds: torch.Tensor,
                 pair_scores: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


@DECODER_REGISTRY.register()
class PaperDecoder(SegmentDecoder):
    """``decode_paper``: first to last second above the threshold (one segment)."""

    ranking = "the mean score of the seconds inside the segment"

    def __call__(self, scores, seconds, pair_scores=None):
        return decode_paper(scores, seconds, threshold=self.threshold)


@DECODER_REGISTRY.register()
class RunsDecoder(SegmentDecoder):
    """``decode_runs``: runs above the threshold, ranked by their area above it."""

    ranking = "the area of the score curve above the threshold inside the segment"

    def __call__(self, scores, seconds, pair_scores=None):
        return decode_runs(scores, seconds, threshold=self.threshold, top_k=self.top_k)


@DECODER_REGISTRY.register()
class MaxSumDecoder(SegmentDecoder):
    """``decode_max_sum``: maximum-sum runs above a level relative to the reference's scores."""

    ranking = ("the sum of the scores minus the level (median + threshold x (max - median)) "
               "inside the segment")

    def __call__(self, scores, seconds, pair_scores=None):
        return decode_max_sum(scores, seconds, threshold=self.threshold, top_k=self.top_k)


@DECODER_REGISTRY.register()
class AlignmentDecoder(SegmentDecoder):
    """``decode_alignment``: the query's seconds laid along the reference in order; needs the
    (reference second, query second) probabilities."""

    scores_are_probabilities = True
    ranking = "the mean match probability of the aligned (reference, query) seconds"

    def __call__(self, scores, seconds, pair_scores=None):
        if pair_scores is None:
            raise ValueError("MODEL.RELOC.DECODER.NAME 'AlignmentDecoder' needs per-query-second "
                             "scores: use it with RelocTemporal and QUERY_POOLING 'seconds'")
        return decode_alignment(pair_scores, seconds, top_k=self.top_k)


def build_decoder(name: str, *, threshold: float, top_k: int) -> SegmentDecoder:
    """The decoder registered as ``name`` (MODEL.RELOC.DECODER.NAME)."""
    try:
        cls = DECODER_REGISTRY.get(name)
    except KeyError:
        known = ", ".join(sorted(k for k, _ in DECODER_REGISTRY))
        raise ValueError(f"unknown MODEL.RELOC.DECODER.NAME {name!r}; registered: {known}") from None
    return cls(threshold=threshold, top_k=top_k)
