"""Training the matching head of a frozen-backbone temporal model on cached features.

When the backbone is frozen and per second (RelocTemporal with a frozen spatial/micro branch and
no macro ConvLSTM), a second's full-frame ROI features do not depend on the window or the query,
so they are computed once per video and every epoch re-uses them: the backbone, which is nearly
all of the compute, runs once, and the head trains for thousands of iterations in minutes on 2
cores.

The pairs are self-supervised copies (the recipe of relocnet/data/self_supervised.py): for each
video, ``queries_per_video`` random 2-4 s spans, each played at a random speed and augmented as a
copy (crop + rescale, colour, blur, noise, mirror, H.264), their features cached too. A training
step scores every second of the query's own video (1 inside the source span, 0 elsewhere: the
hard negatives, same scene, other moment) and ``negatives`` seconds of other videos (0), with
binary cross-entropy, as RelocTemporal's ``loss_cls`` does.
"""
import logging
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.self_supervised import augment_query, change_speed
from ..data.video import probe_video, read_subclips

__all__ = ["CachedQuery", "FeatureSet", "second_rois", "build_feature_set", "train_head"]

logger = logging.getLogger(__name__)


@dataclass
class CachedQuery:
    video: int  # index into FeatureSet.videos
    span: tuple  # [start, end) source seconds
    rois: torch.Tensor  # (V, C, S, S)


@dataclass
class FeatureSet:
    videos: List[torch.Tensor]  # per video (T, C, S, S) full-frame ROI features of each second
    queries: List[CachedQuery]


@torch.no_grad()
def second_rois(model, frames: np.ndarray, chunk: int = 8) -> torch.Tensor:
    """(T, N, H, W, 3) uint8 seconds -> (T, C, S, S) full-frame ROI features (eval mode)."""
    size = frames.shape[2:4]
    out = []
    for s in range(0, len(frames), chunk):
        feats = model.window_features([torch.from_numpy(np.ascontiguousarray(frames[s : s + chunk]))])
        out.append(model.frame_rois(feats[0]["features"], size))
    return torch.cat(out)


def build_feature_set(model, videos: Sequence[str], *, fps: int, size, queries_per_video: int,
                      seed: int, speed_range=(0.75, 1.33)) -> FeatureSet:
    """Features of every second of ``videos`` and of their augmented query spans."""
    model.eval()
    rng = np.random.default_rng(seed)
    feats, queries = [], []
    for i, path in enumerate(videos):
        seconds = probe_video(path).num_seconds
        frames = read_subclips(path, fps, size, 0, seconds)
        feats.append(second_rois(model, frames))
        for _ in range(queries_per_video if seconds >= 3 else 0):
            length = int(rng.integers(2, min(4, seconds - 1) + 1))
            lo, hi = speed_range
            src = int(np.clip(round(length * rng.uniform(lo, hi)), 2, seconds))
            start = int(rng.integers(0, seconds - src + 1))
            q = augment_query(change_speed(frames[start : start + src], length), rng, fps)
            queries.append(CachedQuery(i, (start, start + src), second_rois(model, q)))
        logger.info("cached features of %s (%d s)", path, seconds)
    return FeatureSet(feats, queries)


def _step_loss(head, data: FeatureSet, batch: Sequence[int], negatives: int,
               rng: np.random.Generator) -> torch.Tensor:
    logits, labels = [], []
    for k in batch:
        q = data.queries[k]
        own = data.videos[q.video]
        label = torch.zeros(len(own))
        label[q.span[0] : q.span[1]] = 1.0
        others = [j for j in range(len(data.videos)) if j != q.video]
        picks = [(j, int(rng.integers(len(data.videos[j]))))
                 for j in rng.choice(others, size=negatives)] if others else []
        ref = torch.cat([own] + [data.videos[j][t : t + 1] for j, t in picks])
        logits.append(head(ref, q.rois)[0].amax(dim=1))
        labels.append(torch.cat([label, torch.zeros(len(picks))]))
    return F.binary_cross_entropy_with_logits(torch.cat(logits), torch.cat(labels))


def train_head(head, data: FeatureSet, *, iterations: int, batch_size: int, lr: float,
               negatives: int = 16, seed: int = 0, log_every: int = 50) -> Dict[str, float]:
    """Adam on the head's parameters; returns the mean loss of the first and last ``log_every``
    iterations."""
    if not data.queries:
        raise ValueError("no training query: the videos are shorter than 3 seconds")
    head.train()
    opt = torch.optim.Adam([p for p in head.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    history = []
    for it in range(iterations):
        batch = rng.choice(len(data.queries), size=min(batch_size, len(data.queries)),
                           replace=False)
        loss = _step_loss(head, data, batch.tolist(), negatives, rng)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss))
        if (it + 1) % log_every == 0:
            logger.info("iter %d: loss %.4f", it + 1, np.mean(history[-log_every:]))
    head.eval()
    n = min(log_every, len(history))
    return {"loss_first": float(np.mean(history[:n])), "loss_last": float(np.mean(history[-n:]))}
