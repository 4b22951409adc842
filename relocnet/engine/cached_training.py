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

Labelled pairs (``build_pair_feature_set``: a pair file's query clip of one class, its reference
and the reference's seconds of that class) train the same way, with ``negatives=0``: other videos
may show the class too, the reference's other seconds are the negatives.
"""
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pairs import load_pairs, resolve_video
from ..data.self_supervised import augment_query, change_speed
from ..data.video import probe_video, read_subclips

__all__ = ["CachedQuery", "FeatureSet", "second_rois", "build_feature_set",
           "build_pair_feature_set", "train_head", "predict_cached", "predict_cached_boxes",
           "pair_outputs"]

logger = logging.getLogger(__name__)


@dataclass
class CachedQuery:
    video: int  # index into FeatureSet.videos
    span: tuple  # [start, end) source seconds
    rois: torch.Tensor  # (V, C, S, S)
    spans: tuple = ()  # all matching [start, end) seconds of the video (default: (span,))
    pair_id: str = ""  # labelled pairs: the pair's id

    def positives(self) -> tuple:
        return self.spans or (self.span,)


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


def _video_rois(model, path: str, fps: int, size, cache: Dict[str, torch.Tensor]) -> torch.Tensor:
    if path not in cache:
        frames = read_subclips(path, fps, size, 0, probe_video(path).num_seconds)
        cache[path] = second_rois(model, frames)
    return cache[path]


def build_pair_feature_set(model, pair_files: Sequence[str], *, fps: int, size,
                           video_cache: Optional[Dict[str, torch.Tensor]] = None) -> FeatureSet:
    """Features of every query and reference video of temporal pair files (each video once);
    a CachedQuery per pair, its positives the pair's segments. ``video_cache`` (video path ->
    features), shared between calls with the same model, computes a video once for all of them
    (a benchmark's temporal and spatio-temporal files list the same videos)."""
    model.eval()
    cache: Dict[str, torch.Tensor] = {} if video_cache is None else video_cache
    index: Dict[str, int] = {}
    queries = []
    for pair_file in pair_files:
        for p in load_pairs(pair_file)["pairs"]:
            ref = resolve_video(pair_file, p["reference"]["video"])
            _video_rois(model, ref, fps, size, cache)  # the whole video: segments are absolute
            index.setdefault(ref, len(index))
            q = p["query"]
            qrois = _video_rois(model, resolve_video(pair_file, q["video"]), fps, size, cache)
            spans = tuple((int(s), int(e)) for s, e in p["segments"])
            queries.append(CachedQuery(index[ref], spans[0], qrois[int(q["start"]) : int(q["end"])],
                                       spans, str(p["pair_id"])))
            if len(queries) % 50 == 0:
                logger.info("cached features of %d pairs (%d videos in the cache)", len(queries),
                            len(cache))
    videos = [None] * len(index)
    for path, i in index.items():
        videos[i] = cache[path]
    return FeatureSet(videos, queries)


def _step_loss(head, data: FeatureSet, batch: Sequence[int], negatives: int,
               rng: np.random.Generator) -> torch.Tensor:
    logits, labels = [], []
    for k in batch:
        q = data.queries[k]
        own = data.videos[q.video]
        label = torch.zeros(len(own))
        for s, e in q.positives():
            label[s:e] = 1.0
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
    if not history:
        return {}
    n = min(log_every, len(history))
    return {"loss_first": float(np.mean(history[:n])), "loss_last": float(np.mean(history[-n:]))}


@torch.no_grad()
def predict_cached(model, data: FeatureSet) -> Dict[str, dict]:
    """The model's temporal outputs for every labelled pair of ``data``, computed from the cached
    features as ``inference_one`` computes them from frames (per-second features that do not
    depend on the window: WINDOW_OVERLAP 0, no macro ConvLSTM, no query crops)."""
    if model.query_crops:
        raise ValueError("predict_cached: the query crops are not cached (MODEL.RELOC.QUERY_CROPS)")
    model.eval()
    return {q.pair_id: pair_outputs(model, data.videos[q.video], q.rois) for q in data.queries}


def pair_outputs(model, ref: torch.Tensor, query: torch.Tensor) -> dict:
    """The temporal outputs of one pair from its per-second features: (T, C, S, S) reference,
    (V, C, S, S) query."""
    return _temporal_outputs(model, model.head(ref, query)[0])


def _temporal_outputs(model, logits: torch.Tensor) -> dict:
    """The temporal outputs of one pair from the head's (T, V) match logits."""
    pair_scores = logits.sigmoid()
    return model.temporal_outputs(pair_scores.amax(dim=1), torch.arange(len(logits)), pair_scores)


@torch.no_grad()
def predict_cached_boxes(model, data: FeatureSet, frame_sizes: Dict[str, Sequence[float]]
                         ) -> Dict[str, List[dict]]:
    """Spatio-temporal detections from cached features, for heads that locate the matching actor
    (``head.detect``: the pose-track model): one per reference second, its box in the
    reference's pixels (``frame_sizes``: pair id -> (width, height)) and its match probability,
    times DECODER.OUTSIDE_WEIGHT outside the pair's top segment (as the model's outputs weigh
    them). Entries as in a spatio-temporal prediction file."""
    if not hasattr(model.head, "detect"):
        raise ValueError(f"{type(model.head).__name__} does not locate actors: spatio-temporal "
                         f"pairs need a head with detect (the pose-kernel heads)")
    model.eval()
    out = {}
    for q in data.queries:
        logits, boxes, probs = model.head.detect(data.videos[q.video], q.rois)  # one similarity
        if model.outside_weight != 1.0:  # as the model's outputs weigh them (weigh_detections)
            temporal = _temporal_outputs(model, logits)
            probs = probs * model.detection_weights(temporal["segments"], temporal["seconds"])
        w, h = frame_sizes[q.pair_id]
        boxes = boxes * torch.tensor([w, h, w, h], dtype=boxes.dtype)
        out[q.pair_id] = [{"second": t, "box": [float(v) for v in b], "score": float(p)}
                          for t, (b, p) in enumerate(zip(boxes.tolist(), probs.tolist()))]
    return out
