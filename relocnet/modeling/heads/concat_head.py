"""Concatenation instead of correlation (the paper's V_concat ablation, Table 3) for the temporal
models that score full-frame seconds: the reference ROI and the query object are concatenated
channel-wise, location by location, and a small convolutional stack scores the pair; nothing
compares a query location with reference locations elsewhere in the frame."""
from typing import Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn

from .registry import RELOC_HEAD_REGISTRY, RelocHead

__all__ = ["ConcatHead"]


@RELOC_HEAD_REGISTRY.register()
class ConcatHead(RelocHead):
    """(P, C, S, S) reference ROIs x (D, C, S, S) query objects -> logits (P, D): a 1x1 and a 3x3
    convolution on the concatenated pair, a max over locations and a linear score."""

    @configurable
    def __init__(self, *, in_channels: int, channels: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            Conv2d(2 * in_channels, channels, 1, activation=nn.ReLU()),
            Conv2d(channels, channels, 3, padding=1, activation=nn.ReLU()))
        self.score = nn.Linear(channels, 1)

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = False):
        if box_reg:
            raise ValueError("MODEL.RELOC.HEAD.NAME ConcatHead scores full-frame seconds; it has no "
                             "box regression (use it with the temporal model)")
        return {"in_channels": in_channels, "channels": cfg.MODEL.RELOC.HEAD.CHANNELS}

    def forward(self, ref: torch.Tensor, query: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        p, d = ref.shape[0], query.shape[0]
        pairs = torch.cat([ref.unsqueeze(1).expand(-1, d, -1, -1, -1),
                           query.unsqueeze(0).expand(p, -1, -1, -1, -1)], dim=2)
        x = self.body(pairs.flatten(0, 1)).amax(dim=(2, 3))
        return self.score(x).view(p, d), None
