"""Heads over matched query/reference regions (paper §3.3-3.4)."""
from .correlation_head import CorrelationHead, RegionMatcher, RelocROIHeads

__all__ = ["CorrelationHead", "RegionMatcher", "RelocROIHeads"]
