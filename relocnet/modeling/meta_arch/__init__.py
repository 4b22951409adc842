"""The two re-localization meta-architectures (META_ARCH_REGISTRY)."""
from .common import RelocMetaArchBase
from .reloc_rcnn import RelocRCNN
from .reloc_temporal import RelocTemporal

__all__ = ["RelocMetaArchBase", "RelocRCNN", "RelocTemporal"]
