"""Temporal re-localization (paper §4.1, "the R-CNN framework is removed").

Each reference second's full-frame features (ROIAlign of the whole frame to S x S) are matched
with the pooled full-frame query features (P = D = 1), scored by the correlation head without box
regression, and trained with a BCE per reference second against ``"match"``.

The head may add losses of its own (the SimilarityHead's ``"loss_aux_class"``).
"""
from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes

from ..heads import RelocHead, build_reloc_head
from .common import RelocMetaArchBase

__all__ = ["RelocTemporal"]


def _crop(frames: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
    """uint8 (T, N, H, W, 3) -> the relative ``box`` of every frame, resized back to H x W."""
    t, n, h, w = frames.shape[:4]
    x0, y0, x1, y1 = box
    part = frames[:, :, int(y0 * h) : max(int(y1 * h), int(y0 * h) + 1),
                  int(x0 * w) : max(int(x1 * w), int(x0 * w) + 1)]
    x = part.flatten(0, 1).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(t, n, h, w, 3)


@META_ARCH_REGISTRY.register()
class RelocTemporal(RelocMetaArchBase):
    """Siamese backbone, full-frame matching per second, a match score per reference second."""

    task = "temporal"
    keyframe_res4 = False  # no RPN: the keyframe's spatial branch runs only if it is a scale

    @configurable
    def __init__(self, *, head: RelocHead, query_crops: Sequence[Sequence[float]] = (), **kwargs):
        """
        Args:
            head: a head of RELOC_HEAD_REGISTRY (MODEL.RELOC.HEAD.NAME) without box regression.
            query_crops: relative boxes (x0, y0, x1, y1) of the query frame; at inference each is
                cut out, resized to the input size and matched as well as the full frame, and a
                query second scores its best view (a copy shown small, e.g. picture in picture,
                is matched at the scale of the original).
            kwargs: see :class:`RelocMetaArchBase`.
        """
        super().__init__(**kwargs)
        self.head = head
        self.query_crops = [tuple(float(v) for v in box) for box in query_crops]
        for box in self.query_crops:
            if len(box) != 4 or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
                raise ValueError(f"MODEL.RELOC.QUERY_CROPS: {list(box)} is not a relative box "
                                 f"x0 < x1, y0 < y1 in [0, 1]")

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        ret = cls.base_config(cfg, backbone)
        channels = backbone.output_shape()["features"].channels
        ret["head"] = build_reloc_head(cfg, channels, box_reg=False)
        ret["query_crops"] = [list(b) for b in cfg.MODEL.RELOC.QUERY_CROPS]
        return ret

    def frame_rois(self, features: torch.Tensor, size) -> torch.Tensor:
        """(T, C, h, w) -> (T, C, S, S): ROIAlign with the full-frame box of an (H, W) input."""
        h, w = size
        box = torch.tensor([[0.0, 0.0, float(w), float(h)]], device=features.device)
        return self.pooler([features], [Boxes(box)] * features.shape[0])

    def _window_logits(self, batch, queries: List[torch.Tensor], pairs) -> List[torch.Tensor]:
        """Match logits (n, D) of every window of a training backbone batch, one head call per
        pair."""
        out: List[torch.Tensor] = []
        for i in sorted({i for i, _, _ in batch}):
            windows = [f["features"] for j, _, f in batch if j == i]
            out.extend(self.window_logits(windows, tuple(pairs[i]["reference"].shape[2:4]),
                                          queries[i]))
        return out

    def _score_rois(self, rois: torch.Tensor, query: torch.Tensor, sizes) -> List[torch.Tensor]:
        logits, _ = self.head(rois, query)  # (n, D * views): D = 1, or query seconds
        views = 1 + len(self.query_crops) if not self.training else 1
        return list(logits.view(len(rois), -1, views).amax(dim=2).split(sizes))

    def query_descriptor(self, pair: Dict[str, Any]) -> torch.Tensor:
        """The full-frame query features of one pair: (1, C, S, S) pooled over seconds, or
        (V, C, S, S), one per valid second, with QUERY_POOLING "seconds"; with QUERY_CROPS (at
        inference) the views of each: (D * (1 + crops), C, S, S), object-major."""
        views = [self.query_rois([pair], full_frame=True)[0]]
        if not self.training:
            for box in self.query_crops:
                views.append(self.query_rois([dict(pair, query=_crop(pair["query"], box))],
                                             full_frame=True)[0])
        return torch.stack(views, dim=1).flatten(0, 1)

    def window_logits(
        self, features: List[torch.Tensor], size, query: torch.Tensor
    ) -> List[torch.Tensor]:
        """Match logits (n, D) of reference windows against the D query objects (1, or the
        query's seconds), given their backbone ``"features"`` (n, C, h, w) each, the input size
        (H, W) and a query descriptor; one head call for all of them. A second's match logit is
        the max over D."""
        rois = self.frame_rois(torch.cat(features), size)
        return self._score_rois(rois, query, [f.shape[0] for f in features])

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Training: ``{"loss_cls"}``; inference: one dict per pair (see common.py)."""
        if not self.training:
            return [self.inference_one(x) for x in batched_inputs]
        queries = self.query_rois(batched_inputs, full_frame=True)
        logits, labels = [], []
        refs = [x["reference"] for x in batched_inputs]
        for batch in self.iter_windows(refs, self.reference_seconds):
            logits.extend(lg.amax(dim=1) for lg in self._window_logits(batch, queries,
                                                                        batched_inputs))
            for i, s, feats in batch:
                n = feats["features"].shape[0]
                x = batched_inputs[i]
                labels.append(self.require(x, "match", x["reference"].shape[0])[s : s + n])
        labels = torch.cat(labels).to(device=self.device, dtype=torch.float32)
        loss = F.binary_cross_entropy_with_logits(torch.cat(logits), labels, reduction="mean")
        return {"loss_cls": loss, **self.head.extra_losses(batched_inputs, queries)}

    # ------------------------------------------------------------------ windowed inference
    def chunk_values(self, chunk, query, input_size, state):
        """Per second of each window: the match probabilities (D,) against the query objects."""
        features = [f.to(self.device) for f in chunk["features"]]
        logits = self.window_logits(features, input_size, query)
        return [(int(s) + t, p) for s, lg in zip(chunk["starts"], logits)
                for t, p in enumerate(lg.sigmoid())]

    def second_result(self, second, value, state, *, input_size, file_size):
        return value.cpu()

    def outputs(self, results, seconds):
        """Scores of every reference second (its best query object) and of each of its pairs
        with a query second, and decoded segments."""
        pair_scores = torch.stack(results)
        return self.temporal_outputs(pair_scores.amax(dim=1), seconds, pair_scores)
