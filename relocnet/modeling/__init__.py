"""relocnet's models; importing this module registers them with detectron2's registries."""
from . import backbone, decoding, windows
from .heads import CorrelationHead, RegionMatcher, RelocROIHeads
from .meta_arch import RelocRCNN, RelocTemporal

__all__ = [
    "CorrelationHead",
    "RegionMatcher",
    "RelocROIHeads",
    "RelocRCNN",
    "RelocTemporal",
    "backbone",
    "decoding",
    "windows",
]
