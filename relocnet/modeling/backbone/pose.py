"""Pose maps: a SynthReloc-trained head on frozen ImageNet features that says, at every location,
whether an actor is there and in which pose (the spatial and micro branches of the SynthReloc
models).

ImageNet features of a SynthReloc frame mostly encode colours and textures (clothes, backgrounds);
a linear probe on them recognizes the training classes on held-out reference seconds barely above
chance (docs/RESULTS.md, "Learnability"). Matching unseen action classes needs what the classes
are made of: body poses and how they change. ``PoseHead`` is trained once, on frames rendered
from the *training* split only (relocnet/engine/pose_training.py: the renderer knows every
actor's box and joint angles), to predict per stride-16 cell an actor logit and the pose of the
actor covering the cell: sin and cos of its 9 joint angles and its lift (19 numbers). Its output
is turned into a *pose map* (``pose_map``): ``[a * pose, 1 - a]`` with ``a`` the actor
probability, so that two actor cells compare by pose (cosine), two background cells are equal and
an actor never resembles background. Held-out classes are new sequences of poses, not new poses,
so the map transfers to them (the training classes include hundreds of procedurally generated
ones that cover the joint-angle space: relocnet/data/synthetic/library_procedural.py).

Branches (registered; chosen by MODEL.RELOC.SPATIAL_NAME / MODEL.RELOC.MICRO.NAME):
- ``build_pose_map_backbone``: the pose map of the keyframe (eq. 1's role), 20 channels;
- ``PoseEnvelope`` micro branch: pose maps of every frame of a micro sub-clip, reduced by a max
  over time (eq. 3) of both the map and its negative (the range each joint sweeps, whatever the
  phase) and of each joint's signed rotation between consecutive frames, either way (which way
  and how fast it turns: what tells motion-only twins apart); the max over micro sub-clips
  (eq. 4) keeps them over the whole second. 58 channels.
"""
from typing import Dict

import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from torch import nn
from torch.nn import functional as F

from .efficientnet import EfficientNetLiteBackbone
from .micro import MICRO_REGISTRY

__all__ = ["POSE_CHANNELS", "PoseHead", "pose_map", "PoseMapBackbone", "build_pose_map_backbone",
           "PoseEnvelope", "joint_turns", "load_pose_head", "pose_targets_loss"]

POSE_CHANNELS = 19  # sin, cos of the 9 joint angles (limbs + lean), and the lift


class PoseHead(nn.Module):
    """(N, C, h, w) stride-16 features -> (N, 1 + POSE_CHANNELS, h, w): actor logit, pose."""

    def __init__(self, in_channels: int = 112, channels: int = 96):
        super().__init__()
        layers = []
        for i, dilation in enumerate((1, 2, 1)):
            layers += [Conv2d(in_channels if i == 0 else channels, channels, 3, padding=dilation,
                              dilation=dilation, bias=False, norm=get_norm("BN", channels)),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.out = Conv2d(channels, 1 + POSE_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def pose_map(head_out: torch.Tensor) -> torch.Tensor:
    """(N, 1 + P, h, w) head outputs -> (N, P + 1, h, w) pose map ``[a * pose, 1 - a]``."""
    a = torch.sigmoid(head_out[:, :1])
    return torch.cat([a * head_out[:, 1:], 1.0 - a], dim=1)


def load_pose_head(head: PoseHead, path: str) -> None:
    """Load a trained PoseHead (a state dict file, or a model zoo name ``model_zoo:NAME``)."""
    from ..weights import resolve_checkpoint  # noqa: PLC0415  (weights imports the backbones)

    state = torch.load(resolve_checkpoint(path), map_location="cpu", weights_only=True)
    state = state.get("pose_head", state)
    try:
        missing, unexpected = head.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes differ: another MODEL.RELOC.POSE.CHANNELS
        raise ValueError(f"{path}: PoseHead weights of another shape (MODEL.RELOC.POSE.CHANNELS "
                         f"{head.out.in_channels}?): {str(e).splitlines()[1].strip()}") from None
    if missing or unexpected:
        raise ValueError(f"{path}: not a PoseHead state dict (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")


class PoseMapBackbone(Backbone):
    """(B, 3, H, W) normalized to [-1, 1] -> {"res4": (B, 20, H/16, W/16) pose map}: the frozen
    ImageNet EfficientNet-Lite (not mirror-averaged: left and right limbs must stay apart) and a
    PoseHead."""

    @configurable
    def __init__(self, *, trunk: EfficientNetLiteBackbone, head: PoseHead, frozen: bool = True):
        super().__init__()
        self.trunk, self.head = trunk, head
        self.frozen = frozen
        if frozen:
            self.head.eval()
            for p in self.head.parameters():
                p.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        r = cfg.MODEL.RELOC
        if r.MIRROR_AVERAGE:
            raise ValueError("pose maps tell the left limbs from the right ones: set "
                             "MODEL.RELOC.MIRROR_AVERAGE False")
        trunk = EfficientNetLiteBackbone(variant=r.EFFICIENTNET.VARIANT, weights=r.SPATIAL_WEIGHTS,
                                         frozen=True, mirror_average=False)
        head = PoseHead(trunk.output_shape()["res4"].channels, r.POSE.CHANNELS)
        if r.POSE.WEIGHTS:
            load_pose_head(head, r.POSE.WEIGHTS)
        return {"trunk": trunk, "head": head, "frozen": r.POSE.FROZEN}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.head.eval()
        return self

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res4": ShapeSpec(channels=POSE_CHANNELS + 1, stride=16)}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return {"res4": pose_map(self.head(self.trunk(x)["res4"]))}


@BACKBONE_REGISTRY.register()
def build_pose_map_backbone(cfg, input_shape=None) -> PoseMapBackbone:
    """Pose maps of keyframes (MODEL.RELOC.SPATIAL_NAME), head from MODEL.RELOC.POSE.WEIGHTS."""
    return PoseMapBackbone(cfg)


def joint_turns(maps: torch.Tensor) -> torch.Tensor:
    """(M, n, P + 1, h, w) pose maps of consecutive frames -> (M, n - 1, J, h, w): per joint
    ``a1 a0 sin(theta1 - theta0)``, the signed rotation from a frame to the next where an actor
    is in both (from the sin / cos channels: sin1 cos0 - cos1 sin0)."""
    j = (POSE_CHANNELS - 1) // 2
    sin, cos = maps[:, :, :j], maps[:, :, j : 2 * j]
    return sin[:, 1:] * cos[:, :-1] - cos[:, 1:] * sin[:, :-1]


@MICRO_REGISTRY.register()
class PoseEnvelope(nn.Module):
    """(M, 3, n, H, W) -> (M, 58, H/16, W/16): per location the max over the n frames of the pose
    map and of its negative (the range each pose channel sweeps over the micro sub-clip), and the
    max of each joint's rotation between consecutive frames, either way (direction and speed)."""

    min_frames = 2

    @configurable
    def __init__(self, *, frames: PoseMapBackbone):
        super().__init__()
        self.frames = frames
        self.out_channels = 2 * (POSE_CHANNELS + 1) + 2 * ((POSE_CHANNELS - 1) // 2)

    @classmethod
    def from_config(cls, cfg):
        return {"frames": PoseMapBackbone(cfg)}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        m, c, n, h, w = clips.shape
        maps = self.frames(clips.transpose(1, 2).reshape(m * n, c, h, w))["res4"]
        maps = maps.view(m, n, *maps.shape[1:])
        turns = joint_turns(maps)
        return torch.cat([maps.amax(dim=1), (-maps).amax(dim=1), turns.amax(dim=1),
                          (-turns).amax(dim=1)], dim=1)


def pose_targets_loss(head_out: torch.Tensor, actor: torch.Tensor, pose: torch.Tensor
                      ) -> Dict[str, torch.Tensor]:
    """Training losses of a PoseHead: binary cross-entropy of the actor logit at every cell, and
    the smooth-L1 error of the pose at the cells an actor covers.

    Args:
        head_out: (N, 1 + P, h, w); actor: (N, h, w) in {0, 1}; pose: (N, P, h, w) targets.
    """
    loss_actor = F.binary_cross_entropy_with_logits(head_out[:, 0], actor)
    m = actor.unsqueeze(1)
    err = F.smooth_l1_loss(head_out[:, 1:], pose, reduction="none", beta=0.1) * m
    loss_pose = err.sum() / (m.sum() * pose.shape[1]).clamp(min=1.0)
    return {"loss_actor": loss_actor, "loss_pose": loss_pose}
