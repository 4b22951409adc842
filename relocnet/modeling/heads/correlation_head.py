"""Matching and scoring of reference regions against query objects (paper §3.3-3.4, eqs. 15-20).

- :class:`RegionMatcher`: every (reference ROI p, query object d) pair, p-major (row p*D + d), as
  a map: the patch-wise correlation of eq. 15 (``MODEL.RELOC.MATCHER = "correlation"``, W*W
  channels) or the V_concat ablation (``"concat"``: a 1x1 convolution over the channel
  concatenation [query, reference], also W*W channels, so both variants feed the same head and
  the ablation changes only the matching operation).
- :class:`CorrelationHead`: a ResNet stage over those maps, global average pooling (eq. 16), a
  box-regression fc (eq. 17, class-agnostic deltas) and a match-score fc (eq. 18, a logit: the
  sigmoid is applied by the losses and at inference).
- :class:`RelocROIHeads` (ROI_HEADS_REGISTRY, ``MODEL.ROI_HEADS.NAME: "RelocROIHeads"``):
  detectron2's proposal sampling (GT boxes appended, IoU >= HEAD.IOU_THRESHOLD is a positive),
  the losses of eqs. 19-20 and per-second detection post-processing, around a CorrelationHead.
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.backbone.resnet import BottleneckBlock, ResNet
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances
from fvcore.nn import smooth_l1_loss, weight_init
from torch import nn

from ..correlation import correlate_all_pairs
from .registry import RELOC_HEAD_REGISTRY

__all__ = ["RegionMatcher", "CorrelationHead", "RelocROIHeads"]


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups: batch-independent (the temporal head sees only B*K maps)."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class RegionMatcher(nn.Module):
    """(P, C, S, S) reference ROIs x (D, C, S, S) query ROIs -> (P*D, W*W, S, S), p-major."""

    def __init__(
        self,
        *,
        mode: str,
        in_channels: int,
        patch: int,
        window: int,
        normalize: bool,
        impl: str,
    ):
        super().__init__()
        if mode not in ("correlation", "concat"):
            raise ValueError(f"MODEL.RELOC.MATCHER must be 'correlation' or 'concat', got {mode!r}")
        self.mode = mode
        self.corr_kwargs = dict(patch=patch, window=window, normalize=normalize, impl=impl)
        self.out_channels = window * window
        if mode == "concat":
            # A 1x1 conv over cat([query, ref]) is W_q * query + W_r * ref: computed per side and
            # broadcast over the P x D pairs, so the 2C-channel concatenation is never built.
            self.reduce_query = Conv2d(in_channels, self.out_channels, 1)
            self.reduce_ref = Conv2d(in_channels, self.out_channels, 1, bias=False)
            weight_init.c2_msra_fill(self.reduce_query)
            weight_init.c2_msra_fill(self.reduce_ref)

    def forward(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if self.mode == "correlation":
            return correlate_all_pairs(ref, query, **self.corr_kwargs)
        r = self.reduce_ref(ref).unsqueeze(1)  # (P, 1, W2, S, S)
        q = self.reduce_query(query).unsqueeze(0)  # (1, D, W2, S, S)
        return (r + q).flatten(0, 1)


@RELOC_HEAD_REGISTRY.register()
class CorrelationHead(nn.Module):
    """Matcher, ResNet stage, global average pooling, match logit and (optional) box deltas.

    ``score`` (MODEL.RELOC.HEAD.SCORE) chooses where the match logit comes from:

    - ``"stage"`` (the paper, eq. 18): an fc over the pooled ResNet stage output;
    - ``"similarity"``: a learned 1x1 embedding of both sides, L2-normalized per location, is
      correlated (eq. 15 on unit vectors: cosines) and the logit is an affine function of the
      soft maximum ``tau * (logsumexp(corr / tau) - log n)`` over the n locations and
      displacements. This is the score of a metric-learning Siamese tracker: it only asks that the same action be
      *closer* than others, which transfers to classes never seen in training, whereas the
      stage has to learn what a matching correlation map looks like from scratch. The stage
      still predicts box deltas when ``box_reg``. With ``similarity="pooled"``
      (MODEL.RELOC.HEAD.SIMILARITY) the embeddings are max-pooled over space first and the logit is
      an affine function of the cosine of the two pooled vectors (correlation at one location,
      W = 1): the descriptor the auxiliary classifier trains (meta_arch/common.py).
      With ``saliency`` each (query location l, reference location m) cosine is weighted by
      ``sigmoid(a_l) * sigmoid(b_m)``, two learned 1x1-conv saliencies, in a weighted soft
      maximum ``tau * (log sum w exp(cos / tau) - log sum w)`` (still in [-1, 1]) over the
      location pairs: background locations that look alike in both clips can be switched off.
    """

    @configurable
    def __init__(
        self,
        *,
        matcher: RegionMatcher,
        channels: int,
        num_blocks: int,
        box_reg: bool,
        score: str = "stage",
        in_channels: int = 0,
        embed_channels: int = 64,
        temperature: float = 0.1,
        similarity: str = "correlation",
        saliency: bool = False,
    ):
        """
        Args:
            matcher: builds the P*D pair maps.
            channels: output channels of the ResNet stage (512 in the paper: ResNet "block 3").
            num_blocks: bottleneck blocks in the stage; the first has stride 2, as in ResNet.
            box_reg: whether to predict class-agnostic box deltas (False for the temporal model).
            score: "stage" (paper) or "similarity" (see the class docstring).
            in_channels: channels of the ROI features (needed by "similarity").
            embed_channels: channels of the "similarity" embedding.
            temperature: tau of the "similarity" soft maximum.
            similarity: "correlation" (soft maximum of eq. 15 cosines) or "pooled".
            saliency: weight location pairs by learned saliencies ("correlation" only, with a
                window that covers every displacement).
        """
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"MODEL.RELOC.HEAD.NUM_BLOCKS must be >= 1, got {num_blocks}")
        if score not in ("stage", "similarity"):
            raise ValueError(f"MODEL.RELOC.HEAD.SCORE must be 'stage' or 'similarity', got {score!r}")
        if similarity not in ("correlation", "pooled"):
            raise ValueError(f"MODEL.RELOC.HEAD.SIMILARITY must be 'correlation' or 'pooled', got "
                             f"{similarity!r}")
        if score == "similarity" and (in_channels < 1 or embed_channels < 1 or temperature <= 0):
            raise ValueError("MODEL.RELOC.HEAD.SCORE 'similarity' needs in_channels >= 1, "
                             "EMBED_CHANNELS >= 1 and TEMPERATURE > 0")
        if saliency and (score != "similarity" or similarity != "correlation"):
            raise ValueError("MODEL.RELOC.HEAD.SALIENCY needs SCORE 'similarity' with SIMILARITY "
                             "'correlation'")
        self.matcher = matcher
        self.score = score
        self.similarity = similarity
        if score == "similarity":
            self.embed = Conv2d(in_channels, embed_channels, 1)
            weight_init.c2_msra_fill(self.embed)
            self.temperature = temperature
            # logit = scale * (softmax similarity - offset); cosines lie in [-1, 1]
            self.sim_scale = nn.Parameter(torch.tensor(10.0))
            self.sim_offset = nn.Parameter(torch.tensor(0.5))
        self.saliency = Conv2d(in_channels, 1, 1) if saliency else None
        if self.saliency is not None:
            nn.init.normal_(self.saliency.weight, std=0.01)
            nn.init.constant_(self.saliency.bias, 0.0)  # every weight 0.5 at the start
        blocks = ResNet.make_stage(
            BottleneckBlock,
            num_blocks,
            in_channels=matcher.out_channels,
            out_channels=channels,
            bottleneck_channels=max(channels // 4, 1),
            stride_per_block=[2] + [1] * (num_blocks - 1),
            norm=_group_norm,
        )
        # the stage is built only where something reads it (no unused parameters under DDP)
        self.stage = nn.Sequential(*blocks) if score == "stage" or box_reg else None
        self.cls_score = nn.Linear(channels, 1) if score == "stage" else None
        if self.cls_score is not None:
            nn.init.normal_(self.cls_score.weight, std=0.01)
            nn.init.constant_(self.cls_score.bias, 0.0)
        self.bbox_pred = nn.Linear(channels, 4) if box_reg else None
        if self.bbox_pred is not None:
            nn.init.normal_(self.bbox_pred.weight, std=0.001)
            nn.init.constant_(self.bbox_pred.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = True):
        r = cfg.MODEL.RELOC
        matcher = RegionMatcher(
            mode=r.MATCHER,
            in_channels=in_channels,
            patch=r.CORR.PATCH,
            window=r.CORR.WINDOW,
            normalize=r.CORR.NORMALIZE,
            impl=r.CORR.IMPL,
        )
        return dict(
            matcher=matcher,
            channels=r.HEAD.CHANNELS,
            num_blocks=r.HEAD.NUM_BLOCKS,
            box_reg=box_reg,
            score=r.HEAD.SCORE,
            in_channels=in_channels,
            embed_channels=r.HEAD.EMBED_CHANNELS,
            temperature=r.HEAD.TEMPERATURE,
            similarity=r.HEAD.SIMILARITY,
            saliency=r.HEAD.SALIENCY,
        )

    def similarity_logits(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(P, C, S, S), (D, C, S, S) -> (P, D) logits of the "similarity" score."""
        if self.similarity == "pooled":
            r = F.normalize(self.embed(ref).amax(dim=(2, 3)), dim=1)
            q = F.normalize(self.embed(query).amax(dim=(2, 3)), dim=1)
            return self.sim_scale * (r @ q.t() - self.sim_offset)
        r = F.normalize(self.embed(ref), dim=1)
        q = F.normalize(self.embed(query), dim=1)
        t, window = self.temperature, self.matcher.corr_kwargs["window"]
        h, w = r.shape[2:]
        n = window * window * h * w  # entries of eq. 15 per pair, zero-padded ones included
        if window >= 2 * max(h, w) - 1:
            # the window reaches every location: eq. 15's entries are every (query location,
            # reference location) cosine once plus n - (hw)^2 zeros outside the maps, so one
            # GEMM per pair set gives the same soft maximum without gathering displacements
            cos = torch.einsum("dcl,pcm->pdlm", q.flatten(2), r.flatten(2)).flatten(2) / t
            if self.saliency is not None:  # weighted soft maximum over the location pairs
                log_wq = F.logsigmoid(self.saliency(query)).flatten(1)[None, :, :, None]
                log_wr = F.logsigmoid(self.saliency(ref)).flatten(1)[:, None, None, :]
                log_w = (log_wq + log_wr).flatten(2)  # (P, D, L * M), like cos
                lse = torch.logsumexp(cos + log_w, dim=2)
                soft_max = t * (lse - torch.logsumexp(log_w, dim=2))  # weighted: in [-1, 1]
                return self.sim_scale * (soft_max - self.sim_offset)
            pad = cos.new_full(cos.shape[:2] + (1,), math.log(n - (h * w) ** 2)) \
                if n > (h * w) ** 2 else cos[:, :, :0]
            lse = torch.logsumexp(torch.cat([cos, pad], dim=2), dim=2).flatten()
        elif self.saliency is not None:
            raise ValueError(f"MODEL.RELOC.HEAD.SALIENCY needs CORR.WINDOW >= "
                             f"{2 * max(h, w) - 1} (every displacement) for {h}x{w} ROIs")
        else:
            kw = dict(self.matcher.corr_kwargs, normalize=False, patch=0)
            corr = correlate_all_pairs(r, q, **kw).flatten(1)  # cosines, (P*D, W*W*S*S)
            lse = torch.logsumexp(corr / t, dim=1)
        # tau * (logsumexp - log n): between the mean (tau -> inf) and the max (tau -> 0) of the
        # cosines, so in [-1, 1] whatever the number of locations and displacements
        soft_max = t * (lse - math.log(n))
        return (self.sim_scale * (soft_max - self.sim_offset)).view(ref.shape[0], query.shape[0])

    def forward(
        self, ref: torch.Tensor, query: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(P, C, S, S), (D, C, S, S) -> logits (P, D) and deltas (P, D, 4) (or None)."""
        p, d = ref.shape[0], query.shape[0]
        if p == 0:  # no region at this second: empty outputs that keep the graph
            zero = ref.sum() * 0.0
            deltas = ref.new_zeros((0, d, 4)) + zero if self.bbox_pred is not None else None
            return ref.new_zeros((0, d)) + zero, deltas
        logits = deltas = None
        if self.score == "similarity":
            logits = self.similarity_logits(ref, query)
        if self.cls_score is not None or self.bbox_pred is not None:
            x = self.stage(self.matcher(ref, query)).mean(dim=(2, 3))  # eq. 16
            if self.cls_score is not None:
                logits = self.cls_score(x).view(p, d)  # eq. 18 before the sigmoid
            if self.bbox_pred is not None:
                deltas = self.bbox_pred(x).view(p, d, 4)  # eq. 17
        return logits, deltas


@ROI_HEADS_REGISTRY.register()
class RelocROIHeads(ROIHeads):
    """Proposal sampling, eq. 19-20 losses and per-second post-processing around the head.

    ``num_classes`` is 1: after :meth:`label_and_sample_proposals`, ``gt_classes`` 0 marks a
    positive (IoU >= threshold with a matching actor of that second), 1 a negative.
    """

    @configurable
    def __init__(
        self,
        *,
        head: CorrelationHead,
        box2box_transform: Box2BoxTransform,
        smooth_l1_beta: float,
        test_score_thresh: float,
        test_nms_thresh: float,
        test_detections_per_second: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if head.bbox_pred is None:
            raise ValueError("RelocROIHeads needs a CorrelationHead with box regression")
        self.head = head
        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_detections_per_second = test_detections_per_second

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        h = cfg.MODEL.RELOC.HEAD
        ret = super().from_config(cfg)
        ret.update(
            num_classes=1,
            batch_size_per_image=h.BATCH_SIZE_PER_IMAGE,
            positive_fraction=h.POSITIVE_FRACTION,
            proposal_append_gt=True,
            proposal_matcher=Matcher([h.IOU_THRESHOLD], [0, 1], allow_low_quality_matches=False),
            head=CorrelationHead(cfg, input_shape["features"].channels, box_reg=True),
            box2box_transform=Box2BoxTransform(weights=h.BBOX_REG_WEIGHTS),
            smooth_l1_beta=h.SMOOTH_L1_BETA,
            test_score_thresh=h.SCORE_THRESH_TEST,
            test_nms_thresh=h.NMS_THRESH_TEST,
            test_detections_per_second=h.DETECTIONS_PER_SECOND,
        )
        return ret

    def forward(  # type: ignore[override]
        self, ref_rois: torch.Tensor, query_rois: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
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
