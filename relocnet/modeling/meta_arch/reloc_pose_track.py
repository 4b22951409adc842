"""Spatio-temporal re-localization with the SynthReloc pose-track model.

``RelocTemporal``'s matching (per reference second the full-frame pose tracks against the query's,
the segments decoded from the per-second match probabilities), and per reference second one
detection: the matching actor's box from the head (``detect``: the keyframe's actor region
around the location whose frames match the query best), scored by that location's match
probability. The query's actor is the region of the query boxes (ROIAlign of the pose tracks at
the boxes) or, without boxes, the whole frame. No RPN and no box regression: the pose head
already says where every actor is. Training is RelocTemporal's (the per-second match loss of the
kernel's few numbers; the shipped kernel is not trained, docs/RESULTS.md).
"""
from typing import Any, Dict, List

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances

from .reloc_temporal import RelocTemporal

__all__ = ["RelocPoseTrack"]


@META_ARCH_REGISTRY.register()
class RelocPoseTrack(RelocTemporal):
    """RelocTemporal + one detection per reference second at inference."""

    task = "spatio_temporal"

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        if not hasattr(ret["head"], "detect"):
            raise ValueError(f"MODEL.META_ARCHITECTURE RelocPoseTrack needs a head that locates "
                             f"the matching actor (a pose-kernel head), got "
                             f"{cfg.MODEL.RELOC.HEAD.NAME}")
        if ret["query_crops"]:
            raise ValueError("MODEL.META_ARCHITECTURE RelocPoseTrack matches the query's actor: "
                             "set MODEL.RELOC.QUERY_CROPS []")
        return ret

    def query_descriptor(self, pair: Dict[str, Any]) -> torch.Tensor:
        """The query's pose tracks at its boxes (every valid second, in order), or the whole
        frame's when the pair has no ``query_boxes``."""
        if "query_boxes" not in pair:
            return super().query_descriptor(pair)
        return self.query_rois([pair], full_frame=False)[0]

    def chunk_values(self, chunk, query, input_size, state):
        """Per second of each window: (6,) = the second's match probability, the detection's
        probability and its box (x1, y1, x2, y2 as fractions of the frame)."""
        out = []
        for start, features in zip(chunk["starts"], chunk["features"]):
            rois = self.frame_rois(features.to(self.device), input_size)
            logits, boxes, probs = self.head.detect(rois, query)
            values = torch.cat([logits.amax(dim=1, keepdim=True).sigmoid(), probs[:, None], boxes],
                               dim=1)
            out.extend((int(start) + t, v) for t, v in enumerate(values))
        return out

    def second_result(self, second, value, state, *, input_size, file_size):
        h, w = file_size
        box = value[2:].cpu() * torch.tensor([w, h, w, h], dtype=value.dtype)
        return {"second_score": value[0].cpu(),
                "instances": Instances((h, w), pred_boxes=Boxes(box[None]),
                                       scores=value[1:2].cpu(),
                                       pred_classes=torch.zeros(1, dtype=torch.long))}

    def outputs(self, results: List[Dict[str, Any]], seconds):
        """The temporal outputs of the per-second match probabilities, and ``instances``: one
        detection per reference second (with its absolute ``seconds``), scored by its match
        probability times ``detection_weights`` (DECODER.OUTSIDE_WEIGHT outside the top
        segment)."""
        seconds = torch.as_tensor(seconds, dtype=torch.long)
        out = self.temporal_outputs(torch.stack([r["second_score"] for r in results]), seconds)
        instances = []
        for t, r in zip(seconds.tolist(), results):
            inst = r["instances"]
            inst.seconds = torch.full((len(inst),), t, dtype=torch.long)
            instances.append(inst)
        out["instances"] = Instances.cat(instances)
        return self.weigh_detections(out)
