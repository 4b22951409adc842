"""The paper's matching head (§3.3-3.4, eqs. 15-18).

- :class:`RegionMatcher`: every (reference ROI p, query object d) pair, p-major (row p*D + d), as
  a map: the patch-wise correlation of eq. 15 (``MODEL.RELOC.MATCHER = "correlation"``, W*W
  channels) or the V_concat ablation (``"concat"``: a 1x1 convolution over the channel
  concatenation [query, reference], also W*W channels, so both variants feed the same head and
  the ablation changes only the matching operation).
- :class:`CorrelationHead` (``MODEL.RELOC.HEAD.NAME: "CorrelationHead"``): a ResNet stage over
  those maps, global average pooling (eq. 16), a box-regression fc (eq. 17, class-agnostic deltas)
  and a match-score fc (eq. 18, a logit: the sigmoid is applied by the losses and at inference).
"""
import math
from typing import Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.modeling.backbone.resnet import BottleneckBlock, ResNet
from fvcore.nn import weight_init
from torch import nn

from ..correlation import correlate_all_pairs
from .registry import RELOC_HEAD_REGISTRY, RelocHead

__all__ = ["RegionMatcher", "CorrelationHead"]


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
class CorrelationHead(RelocHead):
    """The paper's head: matcher, ResNet stage, global average pooling, a match logit and
    (optionally) class-agnostic box deltas."""

    @configurable
    def __init__(self, *, matcher: RegionMatcher, channels: int, num_blocks: int, box_reg: bool):
        """
        Args:
            matcher: builds the P*D pair maps.
            channels: output channels of the ResNet stage (512 in the paper: ResNet "block 3").
            num_blocks: bottleneck blocks in the stage; the first has stride 2, as in ResNet.
            box_reg: whether to predict class-agnostic box deltas (False for the temporal model).
        """
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"MODEL.RELOC.HEAD.NUM_BLOCKS must be >= 1, got {num_blocks}")
        self.matcher = matcher
        blocks = ResNet.make_stage(
            BottleneckBlock,
            num_blocks,
            in_channels=matcher.out_channels,
            out_channels=channels,
            bottleneck_channels=max(channels // 4, 1),
            stride_per_block=[2] + [1] * (num_blocks - 1),
            norm=_group_norm,
        )
        self.stage = nn.Sequential(*blocks)
        self.cls_score = nn.Linear(channels, 1)
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
        return dict(matcher=matcher, channels=r.HEAD.CHANNELS, num_blocks=r.HEAD.NUM_BLOCKS,
                    box_reg=box_reg)

    def forward(
        self, ref: torch.Tensor, query: torch.Tensor
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Eqs. 16-18: (P, C, S, S), (D, C, S, S) -> the stage's globally pooled output (eq. 16)
        regressed to box deltas (P, D, 4) (eq. 17, or None) and scored as match logits (P, D)
        (eq. 18 before the sigmoid)."""
        p, d = ref.shape[0], query.shape[0]
        if p == 0:  # no region at this second: empty outputs that keep the graph
            zero = ref.sum() * 0.0
            deltas = ref.new_zeros((0, d, 4)) + zero if self.bbox_pred is not None else None
            return ref.new_zeros((0, d)) + zero, deltas
        x = self.stage(self.matcher(ref, query)).mean(dim=(2, 3))
        deltas = self.bbox_pred(x).view(p, d, 4) if self.bbox_pred is not None else None
        return self.cls_score(x).view(p, d), deltas
