"""The registry of matching heads (MODEL.RELOC.HEAD.NAME), in the manner of PointRend's point heads.

A head maps reference ROI features (P, C, S, S) and query objects (D, C, S, S) to match logits
(P, D) and box deltas (P, D, 4) or None, and may add losses of its own (``extra_losses``).
``build_reloc_head(cfg, in_channels, box_reg)`` builds the one named in the config.
"""
from typing import Any, Dict, List

import torch
from detectron2.utils.registry import Registry
from torch import nn

__all__ = ["RELOC_HEAD_REGISTRY", "RelocHead", "build_reloc_head", "pool_locations"]

RELOC_HEAD_REGISTRY = Registry("RELOC_HEAD")
RELOC_HEAD_REGISTRY.__doc__ = """Heads scoring reference regions against query objects:
(P, C, S, S), (D, C, S, S) -> logits (P, D), deltas (P, D, 4) or None."""


class RelocHead(nn.Module):
    """What every registered head offers besides ``forward``."""

    def extra_losses(self, pairs: List[Dict[str, Any]], queries: List[torch.Tensor]
                     ) -> Dict[str, torch.Tensor]:
        """Training losses of the head's own beyond the match loss (none by default), from the
        training pairs and their query descriptors (one (D, C, S, S) per pair)."""
        return {}


    def second_features(self, rois: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) ROI features of N seconds -> (N, D): what the head reads from a second,
        for the learnability probe (relocnet/evaluation/learnability.py). Default: the mean and
        the max over locations (``pool_locations``)."""
        return pool_locations(rois)


def pool_locations(rois: torch.Tensor) -> torch.Tensor:
    """(N, C, S, S) -> (N, 2C): mean and max over locations."""
    return torch.cat([rois.float().mean(dim=(2, 3)), rois.float().amax(dim=(2, 3))], dim=1)


def build_reloc_head(cfg, in_channels: int, box_reg: bool) -> RelocHead:
    """The head named by MODEL.RELOC.HEAD.NAME."""
    return RELOC_HEAD_REGISTRY.get(cfg.MODEL.RELOC.HEAD.NAME)(cfg, in_channels, box_reg=box_reg)
