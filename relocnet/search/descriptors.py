"""One compact descriptor per second of video, from the model's own backbone.

A second's descriptor is ``model.second_descriptors`` of its backbone ``"features"``; a second
covered by several windows averages them, then is L2-normalized again. References are streamed
through the same windows as re-localization (``stream_windows``), with an overlap of
``overlap`` seconds (0 by default: every second goes through the backbone once); queries are
cut into the same windows from their decoded frames.
"""
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.video import probe_video
from ..engine.inference import stream_windows
from ..modeling.windows import window_starts

__all__ = ["video_descriptors", "frames_descriptors"]


def _merge(batches: Iterable[Tuple[List[int], List[torch.Tensor]]], model,
           length: int, progress: Optional[Callable[[int], None]]) -> np.ndarray:
    """(length, C) float32: per-second descriptors averaged over the windows covering them."""
    sums: Optional[torch.Tensor] = None
    counts = torch.zeros(length)
    done = 0
    for starts, windows in batches:
        for s, f in zip(starts, model.window_features(windows)):
            d = model.second_descriptors(f["features"]).cpu()
            if sums is None:
                sums = torch.zeros(length, d.shape[1])
            sums[s : s + len(d)] += d
            counts[s : s + len(d)] += 1
        if progress is not None:
            end = min(length, starts[-1] + windows[-1].shape[0])
            progress(end - done)
            done = end
    if sums is None or bool((counts == 0).any()):
        raise RuntimeError(f"descriptors cover {int((counts > 0).sum())} of {length} seconds")
    return F.normalize(sums / counts[:, None], dim=1).numpy().astype(np.float32)


@torch.no_grad()
def video_descriptors(model, path: str, *, fps: int, size: Tuple[int, int], overlap: int = 0,
                      progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """(T, C) descriptors of every whole second of the video ``path``, decoded once, streamed.
    Raises VideoDecodeError for a file that cannot be decoded."""
    length = probe_video(path).num_seconds
    if length < 1:
        return np.zeros((0, 0), np.float32)
    window = model.reference_seconds
    batches = stream_windows(path, fps=fps, size=size, length=length, window=window,
                             overlap=min(overlap, window - 1), per_batch=model.windows_per_batch)
    return _merge(batches, model, length, progress)


@torch.no_grad()
def frames_descriptors(model, frames: torch.Tensor, overlap: int = 0) -> np.ndarray:
    """(T, C) descriptors of decoded seconds ``frames`` uint8 (T, N, H, W, 3), e.g. a query's
    valid seconds, in the reference's window length."""
    length = int(frames.shape[0])
    window = model.reference_seconds
    starts = window_starts(length, window, min(overlap, window - 1))
    n = min(window, length)
    per = model.windows_per_batch
    batches = ((starts[b : b + per], [frames[s : s + n] for s in starts[b : b + per]])
               for b in range(0, len(starts), per))
    return _merge(batches, model, length, None)
