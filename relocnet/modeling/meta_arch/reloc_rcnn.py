"""Spatio-temporal re-localization (paper §3.2-3.4).

Per reference second (each one an image for detectron2's RPN, eq. 12): RPN proposals on the
keyframe's "res4" features; ROIAlign of the multi-scale "features" at the proposals (eq. 13) and
at the query boxes (eq. 14, pooled over query seconds, see common.py); the RegionMatcher and the
correlation head (eqs. 15-18) score every proposal x query-object pair and refine its box.

Long references (inference) are cut into windows (windows.py). Proposals of a second are computed
once, from the first window that covers it: "res4" comes from the keyframe alone, so every window
would give the same proposals. The match probabilities and box deltas of a proposal are averaged
over the windows covering its second (the macro ConvLSTM context differs per window), then each
second is post-processed (threshold, NMS, top-k) and rescaled to the video file's size.
"""
from typing import Any, Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.modeling import (
    META_ARCH_REGISTRY,
    build_backbone,
    build_proposal_generator,
    build_roi_heads,
)
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..heads import RelocROIHeads
from ..windows import average_by_second
from .common import RelocMetaArchBase, WindowFeatures

__all__ = ["RelocRCNN"]


def _targets(pair: Dict[str, Any], key: str, start: int, n: int, device) -> List[Instances]:
    """The ``key`` Instances of seconds start..start+n-1, on ``device``, with gt_classes = 0."""
    out = []
    per_second = RelocMetaArchBase.require(pair, key, pair["reference"].shape[0])
    for inst in per_second[start : start + n]:
        inst = inst.to(device)
        if not inst.has("gt_classes"):
            inst.gt_classes = torch.zeros(len(inst), dtype=torch.long, device=device)
        out.append(inst)
    return out


@META_ARCH_REGISTRY.register()
class RelocRCNN(RelocMetaArchBase):
    """Siamese backbone, RPN on reference keyframes, correlation ROI heads."""

    @configurable
    def __init__(self, *, proposal_generator: nn.Module, roi_heads: RelocROIHeads, **kwargs):
        """
        Args:
            proposal_generator: detectron2's RPN over the backbone's "res4".
            roi_heads: the sampling, head, losses and post-processing (heads/correlation_head.py).
            kwargs: see :class:`RelocMetaArchBase`.
        """
        super().__init__(**kwargs)
        if not isinstance(roi_heads, RelocROIHeads):
            raise ValueError(
                f"RelocRCNN needs MODEL.ROI_HEADS.NAME = 'RelocROIHeads' (or a subclass); got "
                f"{type(roi_heads).__name__}"
            )
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads

    @classmethod
    def from_config(cls, cfg):
        if cfg.MODEL.RELOC.QUERY_POOLING == "seconds":
            raise ValueError("MODEL.RELOC.QUERY_POOLING 'seconds' is for RelocTemporal; RelocRCNN "
                             "matches D query objects and needs 'mean' or 'max'")
        backbone = build_backbone(cfg)
        ret = cls.base_config(cfg, backbone)
        ret["proposal_generator"] = build_proposal_generator(cfg, backbone.output_shape())
        ret["roi_heads"] = build_roi_heads(cfg, backbone.output_shape())
        return ret

    def _rpn(self, feats: Dict[str, torch.Tensor], gt: Optional[List[Instances]] = None):
        """RPN over seconds (each an image: its keyframe); returns (proposals, losses)."""
        keyframes = feats["keyframes"]
        images = ImageList(keyframes, [tuple(keyframes.shape[-2:])] * keyframes.shape[0])
        return self.proposal_generator(images, feats, gt)

    @staticmethod
    def _cat_windows(windows: List[WindowFeatures]) -> Dict[str, torch.Tensor]:
        return {k: torch.cat([f[k] for _, _, f in windows]) for k in windows[0][2]}

    def _head_per_pair(self, rois: torch.Tensor, counts: List[int], pair_index: List[int], queries):
        """Split pooled reference ROIs into consecutive runs of the same pair; head per run."""
        logits, deltas, start = [], [], 0
        runs: List[List[int]] = []
        for i, c in zip(pair_index, counts):
            if runs and runs[-1][0] == i:
                runs[-1][1] += c
            else:
                runs.append([i, c])
        for i, c in runs:
            lg, dl = self.roi_heads(rois[start : start + c], queries[i])
            logits.append(lg)
            deltas.append(dl)
            start += c
        return torch.cat(logits), torch.cat(deltas)

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Training: RPN losses, ``loss_cls``, ``loss_box_reg``; inference: one dict per pair."""
        if not self.training:
            return [self.inference_one(x) for x in batched_inputs]
        queries = self.query_rois(batched_inputs, full_frame=False)
        refs = [x["reference"] for x in batched_inputs]
        logits, deltas, sampled, rpn_losses, aux_extra = [], [], [], [], []
        for batch in self.iter_windows(refs, self.reference_seconds):
            feats = self._cat_windows(batch)
            rpn_gt, targets, pair_index = [], [], []
            for i, s, f in batch:
                n, x = f["features"].shape[0], batched_inputs[i]
                rpn_key = "actor_instances" if "actor_instances" in x else "instances"
                rpn_gt += _targets(x, rpn_key, s, n, self.device)
                targets += _targets(x, "instances", s, n, self.device)
                pair_index += [i] * n
            proposals, losses = self._rpn(feats, rpn_gt)
            rpn_losses.append(losses)
            if self.aux_classifier is not None:  # matching reference actors show the action
                gt_rois = self.pooler([feats["features"]], [t.gt_boxes for t in targets])
                chunks = gt_rois.split([len(t) for t in targets])
                aux_extra += [(i, c) for i, c in zip(pair_index, chunks) if len(c)]
            props = self.roi_heads.label_and_sample_proposals(proposals, targets)
            rois = self.pooler([feats["features"]], [p.proposal_boxes for p in props])
            lg, dl = self._head_per_pair(rois, [len(p) for p in props], pair_index, queries)
            logits.append(lg)
            deltas.append(dl)
            sampled += props
        losses = {k: sum(d[k] for d in rpn_losses) / len(rpn_losses) for k in rpn_losses[0]}
        losses.update(self.roi_heads.losses(torch.cat(logits), torch.cat(deltas), sampled))
        if self.aux_classifier is not None:
            losses["loss_aux_class"] = self.aux_loss(batched_inputs, queries, self.roi_heads.head,
                                                     aux_extra)
        return losses

    @torch.no_grad()
    def inference_one(self, pair: Dict[str, Any]) -> Dict[str, Any]:
        """Detections of every reference second (file pixels), per-second scores, segments."""
        query = self.query_descriptor(pair)
        tr = pair["reference"].shape[0]
        proposals: List[Optional[Boxes]] = [None] * tr
        items = []
        for batch in self.iter_windows([pair["reference"]], self.reference_seconds):
            feats = self._cat_windows(batch)
            abs_seconds = [s + t for _, s, f in batch for t in range(f["features"].shape[0])]
            new = [k for k, t in enumerate(abs_seconds) if proposals[t] is None]
            new = [k for k in new if abs_seconds.index(abs_seconds[k]) == k]  # first copy only
            if new:
                found = self.propose({k: v[new] for k, v in feats.items()})
                for k, p in zip(new, found):
                    proposals[abs_seconds[k]] = p
            boxes = [proposals[t] for t in abs_seconds]
            items.extend(zip(abs_seconds, self.match_regions(feats["features"], boxes, query)))
        return self._detections(pair, proposals, average_by_second(items, tr))

    def _detections(self, pair, proposals: List[Boxes], values: List[torch.Tensor]):
        size = tuple(pair["reference"].shape[2:4])
        height, width = pair.get("height", size[0]), pair.get("width", size[1])
        seconds = torch.as_tensor(pair["reference_seconds"], dtype=torch.long)
        per_second, second_scores = [], torch.zeros(len(values))
        for t, (boxes, v) in enumerate(zip(proposals, values)):
            inst = self.second_instances(
                boxes, v, input_size=size, height=height, width=width, second=int(seconds[t])
            )
            per_second.append(inst)
            if len(inst):
                second_scores[t] = inst.scores.max().cpu()
        out = self.temporal_outputs(second_scores, seconds)
        out["instances"] = Instances.cat(per_second).to("cpu")
        return out

    # ------------------------------------------------------------------ steps of inference_one,
    # public for streamed inference over long videos (relocnet/engine/inference.py)
    def query_descriptor(self, pair: Dict[str, Any]) -> torch.Tensor:
        """The pooled query-box features (D, C, S, S) of one pair."""
        return self.query_rois([pair], full_frame=False)[0]

    def propose(self, feats: Dict[str, torch.Tensor]) -> List[Boxes]:
        """RPN proposal boxes (input pixels) of each second of ``feats`` (window_features keys)."""
        found, _ = self._rpn(feats)
        return [p.proposal_boxes for p in found]

    def match_regions(
        self, features: torch.Tensor, boxes: List[Boxes], query: torch.Tensor
    ) -> List[torch.Tensor]:
        """Per second of ``features`` (T, C, h, w) with its proposal ``boxes``: (R, D, 5) =
        match probability and the 4 box deltas of each proposal x query object."""
        rois = self.pooler([features], boxes)
        logits, deltas = self.roi_heads(rois, query)
        values = torch.cat([logits.sigmoid()[..., None], deltas], dim=2)  # (R, D, 5)
        return list(values.split([len(b) for b in boxes]))

    def second_instances(
        self, boxes: Boxes, values: torch.Tensor, *, input_size, height: int, width: int,
        second: int,
    ) -> Instances:
        """Post-processed detections of one second (match_regions values, averaged over windows),
        rescaled from the input size to the (height, width) of the video file."""
        inst = self.roi_heads.inference(values[..., 0], values[..., 1:], boxes, tuple(input_size))
        inst = detector_postprocess(inst, height, width)
        inst.seconds = torch.full(
            (len(inst),), second, dtype=torch.long, device=inst.scores.device
        )
        return inst
