"""Chamfer similarity of pretrained features: the matching head of the ImageNet-feature models.

The score of a (reference region, query object) pair is the chamfer similarity of their
location features (ViSiL, Kordopatis-Zilos et al., ICCV 2019, eq. 1): for each query location the
best cosine over the reference region's locations, averaged over the query locations. It is the
patch-wise correlation of eq. 15 on unit vectors with a window that covers every displacement,
reduced by a max over displacements and a mean over locations instead of a learned stage, so a
pretrained (frozen) feature space matches with no training at all: a copy has, at every query
location, a nearly identical reference location, wherever the copy was cropped or shifted, and
with mirror-averaged features (MODEL.RELOC.MIRROR_AVERAGE) wherever it was mirrored.

What trains: a residual 1x1 adaptation of the features, ``x + A x`` with A = 0 at the start (so
the untrained head *is* frozen-feature matching and training starts from it), and the affine map
``logit = scale * (similarity - offset)`` that turns the similarity into a match probability.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn

from .registry import RELOC_HEAD_REGISTRY, RelocHead

__all__ = ["ChamferHead"]


@RELOC_HEAD_REGISTRY.register()
class ChamferHead(RelocHead):
    """(P, C, S, S) reference ROIs x (D, C, S, S) query objects -> chamfer logits (P, D)."""

    @configurable
    def __init__(self, *, in_channels: int, scale: float = 20.0, offset: float = 0.6):
        """
        Args:
            in_channels: channels of the ROI features.
            scale, offset: initial logit = scale * (similarity - offset) (both trained).
        """
        super().__init__()
        self.adapt = Conv2d(in_channels, in_channels, 1)
        nn.init.zeros_(self.adapt.weight)
        nn.init.zeros_(self.adapt.bias)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.offset = nn.Parameter(torch.tensor(float(offset)))

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = False):
        if box_reg:
            raise ValueError("MODEL.RELOC.HEAD.NAME ChamferHead scores regions; it has no box "
                             "regression (use it with the temporal model)")
        h = cfg.MODEL.RELOC.HEAD
        return {"in_channels": in_channels, "scale": h.SCALE, "offset": h.OFFSET}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, C, S*S) unit vectors per location, after the residual adaptation."""
        return F.normalize(x + self.adapt(x), dim=1).flatten(2)

    def similarity(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(P, D) chamfer similarities in [-1, 1]: mean over query locations of the max cosine
        over reference locations."""
        cos = torch.einsum("dcl,pcm->pdlm", self.embed(query), self.embed(ref))
        return cos.amax(dim=3).mean(dim=2)

    def forward(self, ref: torch.Tensor, query: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self.scale * (self.similarity(ref, query) - self.offset), None
