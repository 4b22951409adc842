"""The re-localization meta-architectures (META_ARCH_REGISTRY)."""
from detectron2.modeling import META_ARCH_REGISTRY

from .common import RelocMetaArchBase
from .reloc_pose_track import RelocPoseTrack
from .reloc_rcnn import RelocRCNN
from .reloc_temporal import RelocTemporal

__all__ = ["RelocMetaArchBase", "RelocPoseTrack", "RelocRCNN", "RelocTemporal", "model_task"]


def model_task(cfg) -> str:
    """The task the config's MODEL.META_ARCHITECTURE solves, as the model class says
    ("temporal" | "spatio_temporal"; "" for a model that is not relocnet's)."""
    return getattr(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), "task", "")
