"""The spatio-temporal model's region stage around a box-regressing matching head (paper §3.4).

:class:`RelocROIHeads` is a plain module, not one of detectron2's ``ROIHeads``: the meta-architecture
pools reference proposals and query boxes with one pooler and matches them pair by pair, which the
``ROIHeads.forward(images, features, proposals, targets)`` contract cannot express. It reuses
detectron2's proposal sampling by holding a ``ROIHeads`` (GT boxes appended, IoU >=
HEAD.IOU_THRESHOLD is a positive), Fast R-CNN's box coding and post-processing, and adds the
losses of eqs. 19-20.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances
from fvcore.nn import smooth_l1_loss
from torch import nn

from .registry import RelocHead, build_reloc_head

__all__ = ["RelocROIHeads"]


class RelocROIHeads(nn.Module):
    """Proposal sampling, eq. 19-20 losses and per-second post-processing around the head.

    After :meth:`label_and_sample_proposals`, ``gt_classes`` 0 marks a positive (IoU >= threshold
    with a matching actor of that second), 1 a negative (detectron2's one-class convention).
    """

    @configurable
    def __init__(
        self,
        *,
        head: RelocHead,
        sampler: ROIHeads,
        box2box_transform: Box2BoxTransform,
        smooth_l1_beta: float,
        test_score_thresh: float,
        test_nms_thresh: float,
        test_detections_per_second: int,
    ):
        """
        Args:
            head: a RELOC_HEAD_REGISTRY head built with box regression.
            sampler: detectron2's ROIHeads, used for ``label_and_sample_proposals`` only.
            box2box_transform, smooth_l1_beta: box coding and the box-regression loss.
            test_*: per-second post-processing (score threshold, NMS, detections kept).
        """
        super().__init__()
        self.head = head
        self.sampler = sampler
        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_detections_per_second = test_detections_per_second

    @classmethod
    def from_config(cls, cfg, in_channels: int):
        h = cfg.MODEL.RELOC.HEAD
        sampler = ROIHeads(
            num_classes=1,
            batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
            positive_fraction=h.POSITIVE_FRACTION,
            proposal_matcher=Matcher([h.IOU_THRESHOLD], [0, 1], allow_low_quality_matches=False),
            proposal_append_gt=True,
        )
        return dict(
            head=build_reloc_head(cfg, in_channels, box_reg=True),
            sampler=sampler,
            box2box_transform=Box2BoxTransform(weights=h.BBOX_REG_WEIGHTS),
            smooth_l1_beta=h.SMOOTH_L1_BETA,
            test_score_thresh=h.SCORE_THRESH_TEST,
            test_nms_thresh=h.NMS_THRESH_TEST,
            test_detections_per_second=h.DETECTIONS_PER_SECOND,
        )

    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]
                                   ) -> List[Instances]:
        """detectron2's sampling: BATCH_SIZE_PER_IMAGE proposals per second, GT boxes added."""
        return self.sampler.label_and_sample_proposals(proposals, targets)

    def forward(self, ref_rois: torch.Tensor, query_rois: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Reference ROIs (P, C, S, S) of one pair vs its query ROIs (D, C, S, S): logits (P, D),
        deltas (P, D, 4). The meta-architecture does the pooling (shared with the query side)."""
        return self.head(ref_rois, query_rois)

    def losses(
        self, logits: torch.Tensor, deltas: torch.Tensor, proposals: List[Instances]
    ) -> Dict[str, torch.Tensor]:
        """Eq. 20 (BCE, mean over every sampled proposal x query object) and eq. 19 (smooth-L1
        on positives, divided by the same count, as detectron2's Fast R-CNN does).

        ``logits`` (R, D) and ``deltas`` (R, D, 4) follow the order of the concatenated sampled
        ``proposals``. The label of a proposal is shared by its D query objects (training uses
        D = 1, as in the paper).
        """
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        fg = gt_classes == 0
        d = logits.shape[1]
        labels = fg.to(logits.dtype)[:, None].expand_as(logits)
        loss_cls = F.binary_cross_entropy_with_logits(logits, labels, reduction="mean")
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)[fg]
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals]
        )[fg]
        gt_deltas = self.box2box_transform.get_deltas(proposal_boxes, gt_boxes)  # (F, 4)
        loss_box = smooth_l1_loss(
            deltas[fg],
            gt_deltas[:, None, :].expand(-1, d, -1),
            beta=self.smooth_l1_beta,
            reduction="sum",
        ) / max(logits.numel(), 1)
        return {"loss_cls": loss_cls, "loss_box_reg": loss_box}

    def inference(
        self,
        scores: torch.Tensor,
        deltas: torch.Tensor,
        proposal_boxes: Boxes,
        image_size: Tuple[int, int],
    ) -> Instances:
        """One reference second: match probabilities (P, D) and deltas (P, D, 4) -> detections.

        Score threshold, NMS among the boxes of each query object, top DETECTIONS_PER_SECOND
        (detectron2's Fast R-CNN post-processing with query objects as classes). Fields:
        pred_boxes (input pixels), scores, pred_classes = index d of the matched query object.
        """
        p, d = scores.shape
        boxes = self.box2box_transform.apply_deltas(deltas.reshape(p, d * 4), proposal_boxes.tensor)
        with_bg = torch.cat([scores, scores.new_zeros((p, 1))], dim=1)  # the API's background column
        instances, _ = fast_rcnn_inference_single_image(
            boxes,
            with_bg,
            image_size,
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_detections_per_second,
        )
        return instances
