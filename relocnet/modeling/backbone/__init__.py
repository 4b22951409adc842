"""The Siamese multi-scale video backbone (paper §3.1); importing it registers the builder."""
from .convlstm import ContextAttentionPool, ConvLSTMCell, MacroBranch
from .micro import MICRO_REGISTRY, I3D, Light3D, build_micro_branch
from .efficientnet import EfficientNetLite3D, EfficientNetLiteBackbone
from .pose import PoseEnvelope, PoseHead, PoseMapBackbone, build_pose_map_backbone
from .video_backbone import (
    FEATURE_SCALES,
    SiameseVideoBackbone,
    build_siamese_video_backbone,
    build_relocnet_resnet_backbone,
    build_spatial_resnet,
)

__all__ = ["ContextAttentionPool", "ConvLSTMCell", "MacroBranch", "MICRO_REGISTRY", "I3D",
           "Light3D", "build_micro_branch", "FEATURE_SCALES", "SiameseVideoBackbone",
           "build_siamese_video_backbone", "build_spatial_resnet",
           "build_relocnet_resnet_backbone", "EfficientNetLite3D", "EfficientNetLiteBackbone",
           "PoseEnvelope", "PoseHead", "PoseMapBackbone", "build_pose_map_backbone"]
