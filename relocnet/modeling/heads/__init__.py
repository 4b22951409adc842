"""Heads over matched query/reference regions (paper §3.3-3.4), chosen by MODEL.RELOC.HEAD.NAME."""
from .chamfer_head import ChamferHead
from .correlation_head import CorrelationHead, RegionMatcher, RelocROIHeads
from .registry import RELOC_HEAD_REGISTRY, build_reloc_head

__all__ = ["ChamferHead", "CorrelationHead", "RegionMatcher", "RelocROIHeads",
           "RELOC_HEAD_REGISTRY", "build_reloc_head"]
