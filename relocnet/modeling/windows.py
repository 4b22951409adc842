"""Long inputs in fixed-length windows (paper §4.1), and padding of short ones.

The network sees at most K seconds at a time (INPUT.VIDEO.REFERENCE_SECONDS for references,
INPUT.VIDEO.QUERY_SECONDS for queries). Longer inputs are covered by windows of K seconds that
overlap by INPUT.VIDEO.WINDOW_OVERLAP seconds; the last window is aligned to the end, so every
second is covered and no window runs past the input. The macro ConvLSTM-2 starts afresh in each
window (each window is one backbone sample).

Merging: a second covered by several windows gets the **average** of its per-window values
(match probabilities, box deltas, query ROI features). Averaging treats the windows as an
ensemble over different temporal contexts and keeps probabilities calibrated, so the decoder's
threshold means the same for covered-once and covered-five-times seconds; a max would push every
second covered by many windows (the middle of a long reference) upwards, false positives first.
"""
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

__all__ = ["window_starts", "RunningMean", "average_by_second", "pad_seconds"]


def window_starts(length: int, size: int, overlap: int) -> List[int]:
    """Start indices of windows of ``size`` seconds covering ``length`` seconds.

    Consecutive windows share ``overlap`` seconds (stride ``size - overlap``); the last window ends
    at ``length``. An input no longer than ``size`` is one window starting at 0 (of ``length``
    seconds: it is not padded).
    """
    if length < 1 or size < 1:
        raise ValueError(f"windows need length >= 1 and size >= 1, got {length} and {size}")
    if not 0 <= overlap < size:
        raise ValueError(
            f"INPUT.VIDEO.WINDOW_OVERLAP must be in [0, window size - 1]; got {overlap} for "
            f"windows of {size} s"
        )
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size - overlap))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


class RunningMean:
    """Per-second means of values added in order (one per window covering the second), handed
    out once no later window adds to them: streamed merging in bounded memory."""

    def __init__(self):
        self.sums: Dict[int, Any] = {}
        self.counts: Dict[int, int] = {}

    def add(self, t: int, value) -> None:
        self.sums[t] = value if t not in self.sums else self.sums[t] + value
        self.counts[t] = self.counts.get(t, 0) + 1

    def pop_before(self, limit: int) -> List[Tuple[int, Any]]:
        """The means of the seconds before ``limit``, in order; they are forgotten."""
        done = sorted(t for t in self.sums if t < limit)
        return [(t, self.sums.pop(t) / self.counts.pop(t)) for t in done]


def average_by_second(
    items: Iterable[Tuple[int, torch.Tensor]], length: int
) -> List[Optional[torch.Tensor]]:
    """Mean of the tensors given for each second 0..length-1 (None for a second given none).

    ``items`` are ``(second, value)`` pairs, e.g. one per (window, second of the window); values of
    the same second must have the same shape.
    """
    merged = RunningMean()
    for t, value in items:
        if not 0 <= t < length:
            raise IndexError(f"second {t} outside 0..{length - 1}")
        merged.add(t, value)
    means = dict(merged.pop_before(length))
    return [means.get(t) for t in range(length)]


def pad_seconds(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad ``x`` along dim 0 (seconds) to ``length``; longer inputs are returned unchanged."""
    if x.shape[0] >= length:
        return x
    pad = x.new_zeros((length - x.shape[0],) + tuple(x.shape[1:]))
    return torch.cat([x, pad], dim=0)
