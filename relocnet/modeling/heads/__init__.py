"""Heads over matched query/reference regions (paper §3.3-3.4), chosen by MODEL.RELOC.HEAD.NAME."""
from .chamfer_head import ChamferHead
from .concat_head import ConcatHead
from .correlation_head import CorrelationHead, RegionMatcher
from .pose_kernel_head import PoseKernelHead
from .registry import RELOC_HEAD_REGISTRY, RelocHead, build_reloc_head
from .roi_heads import RelocROIHeads
from .similarity_head import SimilarityHead

__all__ = ["ChamferHead", "ConcatHead", "CorrelationHead", "PoseKernelHead", "RegionMatcher",
           "RelocROIHeads", "SimilarityHead",
           "RELOC_HEAD_REGISTRY", "RelocHead", "build_reloc_head"]
