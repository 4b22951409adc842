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
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_proposal_generator
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..heads import RelocROIHeads
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

    task = "spatio_temporal"

    @configurable
    def __init__(self, *, proposal_generator: nn.Module, roi_heads: RelocROIHeads, **kwargs):
        """
        Args:
            proposal_generator: detectron2's RPN over the backbone's "res4".
            roi_heads: the sampling, head, losses and post-processing (heads/roi_heads.py).
            kwargs: see :class:`RelocMetaArchBase`.
        """
        super().__init__(**kwargs)
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
        ret["roi_heads"] = RelocROIHeads(cfg, backbone.output_shape()["features"].channels)
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
        logits, deltas, sampled, rpn_losses = [], [], [], []
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
            props = self.roi_heads.label_and_sample_proposals(proposals, targets)
            rois = self.pooler([feats["features"]], [p.proposal_boxes for p in props])
            lg, dl = self._head_per_pair(rois, [len(p) for p in props], pair_index, queries)
            logits.append(lg)
            deltas.append(dl)
            sampled += props
        losses = {k: sum(d[k] for d in rpn_losses) / len(rpn_losses) for k in rpn_losses[0]}
        losses.update(self.roi_heads.losses(torch.cat(logits), torch.cat(deltas), sampled))
        losses.update(self.roi_heads.head.extra_losses(batched_inputs, queries))
        return losses

    # ------------------------------------------------------------------ windowed inference
    def window_chunk(self, starts, windows, covered):
        """The backbone's features and, for the seconds first seen in this batch (from ``covered``
        on), the RPN's proposals: proposals come from a keyframe's "res4" alone, so every window
        of a second would give the same ones, and each second is proposed once."""
        feats = self.window_features(windows)
        cat = {k: torch.cat([f[k] for f in feats]) for k in feats[0]}
        n = windows[0].shape[0]
        abs_seconds = [s + t for s in starts for t in range(n)]
        new = [k for k, t in enumerate(abs_seconds) if t >= covered and abs_seconds.index(t) == k]
        found = self.propose({k: v[new] for k, v in cat.items()}) if new else []
        boxes = [b.tensor for b in found]
        return {"starts": torch.as_tensor(starts, dtype=torch.long),
                "features": torch.stack([f["features"] for f in feats]),
                "proposal_seconds": torch.as_tensor([abs_seconds[k] for k in new], dtype=torch.long),
                "proposal_counts": torch.as_tensor([len(b) for b in boxes], dtype=torch.long),
                "proposal_boxes": torch.cat(boxes) if boxes else torch.zeros((0, 4))}

    def chunk_values(self, chunk, query, input_size, state):
        """Per second of each window: (R, D, 5), the match probability and box deltas of each
        of the second's proposals x query objects."""
        proposals = state.setdefault("proposals", {})
        boxes = chunk["proposal_boxes"].to(self.device)
        for t, b in zip(chunk["proposal_seconds"].tolist(),
                        boxes.split(chunk["proposal_counts"].tolist())):
            proposals[t] = Boxes(b)
        n = chunk["features"].shape[1]
        seconds = [int(s) + t for s in chunk["starts"] for t in range(n)]
        features = chunk["features"].to(self.device).flatten(0, 1)
        values = self.match_regions(features, [proposals[t] for t in seconds], query)
        return list(zip(seconds, values))

    def second_result(self, second, value, state, *, input_size, file_size):
        """The second's detections (threshold, NMS, top-k) in the video file's pixels."""
        inst = self.roi_heads.inference(value[..., 0], value[..., 1:],
                                        state["proposals"].pop(second), tuple(input_size))
        return detector_postprocess(inst, *file_size).to("cpu")

    def outputs(self, results: List[Instances], seconds):
        """Detections of every reference second (with their absolute ``seconds``), per-second
        scores (a second's best detection, 0 without one) and decoded segments; detection scores
        outside the top segment times DECODER.OUTSIDE_WEIGHT (``weigh_detections``)."""
        seconds = torch.as_tensor(seconds, dtype=torch.long)
        second_scores = torch.zeros(len(results))
        for t, inst in enumerate(results):
            inst.seconds = torch.full((len(inst),), int(seconds[t]), dtype=torch.long)
            if len(inst):
                second_scores[t] = inst.scores.max()
        out = self.temporal_outputs(second_scores, seconds)
        out["instances"] = Instances.cat(results)
        return self.weigh_detections(out)

    def query_descriptor(self, pair: Dict[str, Any]) -> torch.Tensor:
        """The pooled query-box features (D, C, S, S) of one pair."""
        return self.query_rois([pair], full_frame=False)[0]

    def propose(self, feats: Dict[str, torch.Tensor]) -> List[Boxes]:
        """Eq. 12: RPN proposal boxes (input pixels) of each second of ``feats``
        (window_features keys), from its keyframe's "res4"."""
        found, _ = self._rpn(feats)
        return [p.proposal_boxes for p in found]

    def match_regions(
        self, features: torch.Tensor, boxes: List[Boxes], query: torch.Tensor
    ) -> List[torch.Tensor]:
        """Eq. 13 (ROIAlign at the proposals), then the head. Per second of ``features`` (T, C,
        h, w) with its proposal ``boxes``: (R, D, 5) = match probability and the 4 box deltas of
        each proposal x query object."""
        rois = self.pooler([features], boxes)
        logits, deltas = self.roi_heads(rois, query)
        values = torch.cat([logits.sigmoid()[..., None], deltas], dim=2)  # (R, D, 5)
        return list(values.split([len(b) for b in boxes]))
