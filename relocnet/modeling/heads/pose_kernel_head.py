"""Frame-by-frame pose matching: the matching head of the SynthReloc pose-track model.

Its input is ``PoseTrack``'s per-second features (relocnet/modeling/backbone/pose.py): at every
location and for each of the n frames of the second, the actor probability ``a``, the pose (sin
and cos of 9 joint angles, the lift) and the pelvis offset. The query is one actor: per frame, its
pose is the ``a``-weighted mean over locations, and its speed the change of the pelvis offset from
the first to the last frame. A reference second may show several actors: each location keeps its
own pose and speed.

The score of (reference second, query second) is, for every reference frame, the best kernel
similarity between the pose at a location and any frame of the query second, weighted by ``a``
at that location and maximised over locations, then averaged over the reference frames:

    d = mean_joints (1 - cos(angle difference)) + (lift difference)^2 + lambda (speed difference)^2
    s = exp(-d / sigma)

So a reference second matches when each of its frames shows a pose the query takes at some moment
(phase-free) and the actor moves as fast and the same way as the query's. Why frames and not the
keyframe's chamfer or an envelope over time: with the renderer's true poses in place of the
predicted ones (tools/pose_oracle.py; sigma 0.05, lambda 4), this rule and the ``max_sum``
decoder localize 94.6 % (easy) / 65.2 % (standard) of the SynthReloc test pairs at tIoU 0.5:0.9,
the former keyframe / envelope chamfer with the ``alignment`` decoder 51.5 / 34.2
(docs/RESULTS.md, "The pose-track model"); ``PoseSequenceHead`` (the shipped head: the query's
frames in order) 96.2 / 74.2 (session 7's kernel, sigma 0.03, lambda 1).

``detect`` also says where the matching actor is (spatio-temporal detection): the location
whose frames match best on average, and the region of the keyframe's actor map around it.

Trainable: sigma, lambda and the affine map ``logit = scale * (s - offset)`` (4 numbers); the
shipped model's are not trained (training them by the per-second loss lowered the scores): sigma
0.05 and lambda 1 were chosen on validation pairs and are stored in its weights file.
"""
import math
from typing import Optional, Tuple

import torch
from detectron2.config import configurable
from torch import nn

from ..backbone.pose import HEAD_CHANNELS, POSE_CHANNELS
from .registry import RELOC_HEAD_REGISTRY, RelocHead

__all__ = ["PoseKernelHead", "PoseSequenceHead", "PoseKeyframeHead", "actor_region_box"]

JOINTS = (POSE_CHANNELS - 1) // 2  # sin, cos of each joint, then the lift


def _unit(sin_cos: torch.Tensor, dim: int) -> torch.Tensor:
    """Sin and cos of each joint (J then J along ``dim``) scaled to unit vectors."""
    sin, cos = sin_cos.split(JOINTS, dim=dim)
    norm = torch.sqrt(sin ** 2 + cos ** 2).clamp(min=1e-3)
    return torch.cat([sin / norm, cos / norm], dim=dim)


def _split(x: torch.Tensor, frames: int):
    """(N, frames * HEAD_CHANNELS, S, S) -> a (N, n, L), unit joint vectors (N, n, 2J, L), lift
    (N, n, L), speed (N, L) in body heights per second."""
    n = x.shape[0]
    x = x.reshape(n, frames, HEAD_CHANNELS, -1)
    a = x[:, :, 0]
    unit = _unit(x[:, :, 1 : 1 + 2 * JOINTS], dim=2)
    lift = x[:, :, POSE_CHANNELS]
    offset = x[:, :, POSE_CHANNELS + 1]
    speed = (offset[:, -1] - offset[:, 0]) * frames / max(frames - 1, 1)
    return a, unit, lift, speed, offset


def _edge(profile: torch.Tensor, inner: int, outer: int) -> float:
    """Where the actor probability crosses 0.5 between an inner cell and its outer neighbour, in
    cell units from the inner cell's centre (0: at the centre, 1: at the neighbour's)."""
    v_in, v_out = float(profile[inner]), float(profile[outer])
    return min(max((v_in - 0.5) / max(v_in - v_out, 1e-3), 0.0), 1.0)


def actor_region_box(a: torch.Tensor, start: int) -> torch.Tensor:
    """(h, w) actor probabilities, a flat start index -> the box (x1, y1, x2, y2, fractions of
    the frame) of the 4-connected region of cells with ``a > 0.5`` around ``start`` (the start
    cell alone if it is below), its edges placed where ``a`` crosses 0.5 between the outermost
    cells and their neighbours (linear interpolation)."""
    h, w = a.shape
    y0, x0 = divmod(int(start), w)
    if a[y0, x0] <= 0.5:  # no actor there: the cell itself
        return torch.tensor([x0 / w, y0 / h, (x0 + 1) / w, (y0 + 1) / h])
    seen, stack = {(y0, x0)}, [(y0, x0)]
    while stack:
        y, x = stack.pop()
        for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= yy < h and 0 <= xx < w and (yy, xx) not in seen and a[yy, xx] > 0.5:
                seen.add((yy, xx))
                stack.append((yy, xx))
    ys, xs = [p[0] for p in seen], [p[1] for p in seen]
    top, bottom, left, right = min(ys), max(ys), min(xs), max(xs)
    cols = a[top : bottom + 1].amax(dim=0)  # per column, over the region's rows
    rows = a[:, left : right + 1].amax(dim=1)
    x1 = left + 0.5 - (_edge(cols, left, left - 1) if left > 0 else 0.5)
    x2 = right + 0.5 + (_edge(cols, right, right + 1) if right < w - 1 else 0.5)
    y1 = top + 0.5 - (_edge(rows, top, top - 1) if top > 0 else 0.5)
    y2 = bottom + 0.5 + (_edge(rows, bottom, bottom + 1) if bottom < h - 1 else 0.5)
    return torch.tensor([x1 / w, y1 / h, x2 / w, y2 / h])


@RELOC_HEAD_REGISTRY.register()
class PoseKernelHead(RelocHead):
    """(P, n*21, S, S) reference seconds x (D, n*21, S, S) query seconds -> logits (P, D)."""

    @configurable
    def __init__(self, *, frames: int, sigma: float = 0.03, speed_weight: float = 1.0,
                 scale: float = 10.0, offset: float = 0.5):
        """
        Args:
            frames: frames per second in the features (INPUT.VIDEO.FPS).
            sigma, speed_weight: the kernel's initial width and speed weight (both trained).
            scale, offset: initial logit = scale * (score - offset) (both trained).
        """
        super().__init__()
        self.frames = frames
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        self.log_speed_weight = nn.Parameter(torch.tensor(math.log(speed_weight)))
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.offset = nn.Parameter(torch.tensor(float(offset)))

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = False):
        if box_reg:
            raise ValueError("MODEL.RELOC.HEAD.NAME PoseKernelHead scores whole seconds; it has no "
                             "box regression (use it with the temporal model)")
        frames = cfg.INPUT.VIDEO.FPS
        if in_channels != frames * HEAD_CHANNELS:
            raise ValueError(f"PoseKernelHead needs PoseTrack features alone ({frames} x "
                             f"{HEAD_CHANNELS} channels: MODEL.RELOC.FEATURES ['micro'], "
                             f"MICRO.NAME PoseTrack), got {in_channels} channels")
        h = cfg.MODEL.RELOC.HEAD
        return {"frames": frames, "scale": h.SCALE, "offset": h.OFFSET}

    def _parts(self, x: torch.Tensor):
        """The frames a variant compares: all of them (``_split``)."""
        return _split(x, self.frames)

    def query_track(self, query: torch.Tensor):
        """(D, n*21, S, S) -> per query second and frame the actor's unit joint vectors
        (D, n, 2J), lift (D, n) and speed (D,): ``a``-weighted means over locations."""
        a, unit, lift, _, offset = self._parts(query)
        w = a / a.sum(dim=2, keepdim=True).clamp(min=1e-6)
        unit_q = _unit((unit * w.unsqueeze(2)).sum(dim=3), dim=2)
        both = a[:, 0] * a[:, -1]  # locations on the actor in the first and the last frame
        moved = ((offset[:, -1] - offset[:, 0]) * both).sum(1) / both.sum(1).clamp(min=1e-6)
        frames = a.shape[1]
        return unit_q, (lift * w).sum(dim=2), moved * frames / max(frames - 1, 1)

    def second_features(self, rois: torch.Tensor) -> torch.Tensor:
        """(N, n * (2J + 1) + 1): the actor's joint vectors and lift in every frame and its speed
        (``query_track``), what the kernel compares."""
        unit, lift, speed = self.query_track(rois)
        return torch.cat([unit.flatten(1), lift, speed[:, None]], dim=1)

    def _similarity(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(P, n, L, D, m): ``a`` at a reference frame's location times the kernel similarity of
        its pose to frame j of query second d."""
        a, unit, lift, speed, _ = self._parts(ref)  # (P, n, L), (P, n, 2J, L), ..., (P, L)
        unit_q, lift_q, speed_q = self.query_track(query)  # (D, m, 2J), (D, m), (D,)
        cos = torch.einsum("pkel,dme->pkldm", unit, unit_q) / JOINTS  # mean cos over joints
        dist = (1.0 - cos) + (lift[:, :, :, None, None] - lift_q[None, None, None]) ** 2
        dist = dist + self.log_speed_weight.exp() * (
            speed[:, None, :, None, None] - speed_q[None, None, None, :, None]) ** 2
        return a[:, :, :, None, None] * torch.exp(-dist / self.log_sigma.exp())

    def _scores(self, sim: torch.Tensor) -> torch.Tensor:
        """(P, D) from the similarity (P, n, L, D, m): per reference frame the best location and
        the best frame of each query second, mean over the reference frames."""
        return sim.amax(dim=4).amax(dim=2).mean(dim=1)

    def _location_scores(self, sim: torch.Tensor) -> torch.Tensor:
        """(P, L) from the similarity: how well the actor at each location matches (any query
        second), its frames scored at that location only."""
        return sim.amax(dim=4).mean(dim=1).amax(dim=2)

    def scores(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(P, D) scores in [0, 1] (``_scores``)."""
        return self._scores(self._similarity(ref, query))

    def detect(self, ref: torch.Tensor, query: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The match logits (P, D) of ``forward`` and the matching actor of each reference
        second, ``boxes (P, 4)`` as fractions of the frame (x1, y1, x2, y2) and their
        probabilities (P,), from one similarity tensor. The actor is the location whose frames
        match the query best (``_location_scores``); its box is the region of the keyframe's actor
        map around it (``actor_region_box``)."""
        sim = self._similarity(ref, query)
        per_location = self._location_scores(sim)
        best = per_location.argmax(dim=1)
        s = ref.shape[-1]
        a_key = ref.reshape(ref.shape[0], self.frames, HEAD_CHANNELS, ref.shape[-2], s)[
            :, self.frames // 2, 0]
        boxes = torch.stack([actor_region_box(a_key[p], int(best[p])) for p in range(len(best))])
        score = per_location.gather(1, best[:, None])[:, 0]
        return (self.scale * (self._scores(sim) - self.offset), boxes,
                torch.sigmoid(self.scale * (score - self.offset)))

    def forward(self, ref: torch.Tensor, query: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.scale * (self.scores(ref, query) - self.offset), None


def _aligned(frames: torch.Tensor) -> torch.Tensor:
    """(N, n, F) similarities of n frames to F query frames in order -> (N,): the mean over the n
    frames of the similarity to the aligned query frame, at the best shift; any query frame
    when the query is shorter than n frames."""
    n, total = frames.shape[1], frames.shape[2]
    if total < n:
        return frames.amax(dim=2).mean(dim=1)
    shifts = torch.arange(total - n + 1)[:, None] + torch.arange(n)[None]  # (shifts, n)
    return frames[:, torch.arange(n)[None], shifts].mean(dim=2).amax(dim=1)


@RELOC_HEAD_REGISTRY.register()
class PoseSequenceHead(PoseKernelHead):
    """The kernel of ``PoseKernelHead`` with the query's frames in order: a reference second
    matches when its n frames match n *consecutive* frames of the query, at the best shift over
    the whole query (all its seconds, in order), not each reference frame its best query frame
    anywhere in a second. The order of the movements counts, over the query's whole length, so
    order and rhythm twins (``punch_llr`` / ``punch_rrl``: the same punches in another order;
    ``raise_left_first`` / ``raise_right_first``) no longer match each other. Logits (P, 1): one
    query object, the whole query; the query's seconds must come in order (QUERY_POOLING
    "seconds", no QUERY_CROPS)."""

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = False):
        r = cfg.MODEL.RELOC
        if r.QUERY_POOLING != "seconds" or len(r.QUERY_CROPS):
            raise ValueError("MODEL.RELOC.HEAD.NAME PoseSequenceHead reads the query's seconds in "
                             "order: set MODEL.RELOC.QUERY_POOLING 'seconds' and QUERY_CROPS []")
        return super().from_config(cfg, in_channels, box_reg)

    def _scores(self, sim: torch.Tensor) -> torch.Tensor:
        """(P, 1): per shift of the reference second's frames along the query's, the mean over
        frames of the best location's similarity to the aligned query frame; the best shift."""
        return _aligned(sim.amax(dim=2).flatten(2))[:, None]

    def _location_scores(self, sim: torch.Tensor) -> torch.Tensor:
        """(P, L): the aligned score of the actor at each location."""
        sim = sim.flatten(3)  # (P, n, L, D * m)
        return _aligned(sim.transpose(1, 2).flatten(0, 1)).view(sim.shape[0], sim.shape[2])


@RELOC_HEAD_REGISTRY.register()
class PoseKeyframeHead(PoseKernelHead):
    """Ablation V_corr|s of the pose-track model: the kernel on the keyframe (the middle frame) of
    each second only, so no motion: one pose per second, no speed."""

    def _parts(self, x: torch.Tensor):
        k = self.frames // 2
        x = x.reshape(x.shape[0], self.frames, HEAD_CHANNELS, *x.shape[2:])[:, k : k + 1]
        return _split(x.flatten(1, 2), 1)
