"""Pose maps: a SynthReloc-trained head on frozen ImageNet features that says, at every location,
whether an actor is there and in which pose (the spatial and micro branches of the SynthReloc
models).

ImageNet features of a SynthReloc frame mostly encode colours and textures (clothes, backgrounds);
a linear probe on them recognizes the training classes on held-out reference seconds barely above
chance (docs/RESULTS.md, "Learnability"). Matching unseen action classes needs what the classes
are made of: body poses and how they change. ``PoseHead`` is trained once, on frames rendered
from the *training* split only (relocnet/engine/pose_training.py: the renderer knows every
actor's box and joint angles), to predict per stride-16 cell an actor logit and the pose of the
actor covering the cell: sin and cos of its 9 joint angles and its lift (19 numbers), and the
horizontal offset of that actor's pelvis from the cell in body heights. Its input is the trunk's
stride-16 features with its stride-8 ones folded in (``pose_inputs``: forearms are a few pixels
wide); its training frames include clips of random poses (``random_pose``). Its output
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
- ``PoseTrack`` micro branch: the raw head outputs of every frame of the second, in order (actor
  probability, pose, pelvis offset: 21 channels per frame), for the pose-kernel heads
  (``PoseSequenceHead``: the shipped SynthReloc model). Unlike eq. 3 nothing is pooled over time.

``MODEL.RELOC.POSE.MIRROR_TEST`` also runs the head on each frame's mirror image and averages the
mirrored-back outputs with the direct ones (``mirror_head_outputs``); ``tools/train_pose.py``
trains on every frame and its mirror image (``with_mirror_images``).
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

__all__ = ["POSE_CHANNELS", "HEAD_CHANNELS", "pose_inputs", "pose_input_channels", "PoseHead",
           "pose_map", "PoseMapBackbone", "build_pose_map_backbone",
           "PoseEnvelope", "PoseTrack", "joint_turns", "load_pose_head", "pose_targets_loss",
           "mirror_pose_channels", "mirror_head_outputs"]

POSE_CHANNELS = 19  # sin, cos of the 9 joint angles (limbs + lean), and the lift
# after the pose: the horizontal offset of the actor's pelvis from the cell, in body heights (the
# difference of two frames at one cell is how far the actor moved: side steps, walks)
HEAD_CHANNELS = 1 + POSE_CHANNELS + 1


# the joints of a pose vector (actions.JOINTS: L_SH, L_EL, R_SH, R_EL, L_HIP, L_KNEE, R_HIP, R_KNEE,
# LEAN) in the mirror image: left and right swap (angles are in a mirrored convention, so a
# joint's angle is its mirror twin's: actions.mirror_pose); the lean's sine changes sign
_MIRROR_JOINTS = (2, 3, 0, 1, 6, 7, 4, 5, 8)


def mirror_pose_channels(pose: torch.Tensor) -> torch.Tensor:
    """(N, POSE_CHANNELS + 1, ...) pose vectors and pelvis offsets -> those of the same actors in
    the mirror image (the channels only; nothing is flipped spatially)."""
    j = (POSE_CHANNELS - 1) // 2
    perm = torch.tensor(_MIRROR_JOINTS, device=pose.device)
    sin, cos = pose[:, :j].index_select(1, perm), pose[:, j : 2 * j].index_select(1, perm)
    sin = torch.cat([sin[:, :-1], -sin[:, -1:]], dim=1)  # the lean
    return torch.cat([sin, cos, pose[:, 2 * j : POSE_CHANNELS], -pose[:, POSE_CHANNELS:]], dim=1)


def mirror_head_outputs(out: torch.Tensor) -> torch.Tensor:
    """(N, HEAD_CHANNELS, h, w) head outputs of a frame -> the outputs that describe its mirror
    image (flipped left-right, limbs and directions mirrored)."""
    return torch.cat([out[:, :1], mirror_pose_channels(out[:, 1:])], dim=1).flip(-1)


def pose_inputs(trunk_out: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The PoseHead's input: the trunk's stride-16 features and its stride-8 ones folded into the
    same grid (each 2 x 2 block of res3 as channels): forearms are a few pixels wide."""
    res3, res4 = trunk_out["res3"], trunk_out["res4"]
    dh, dw = 2 * res4.shape[2] - res3.shape[2], 2 * res4.shape[3] - res3.shape[3]
    if dh or dw:  # an input side that is not a multiple of 16: res3 one row / column short
        res3 = F.pad(res3, (0, dw, 0, dh), mode="replicate")
    return torch.cat([res4, F.pixel_unshuffle(res3, 2)], dim=1)


def pose_input_channels(trunk) -> int:
    shapes = trunk.output_shape()
    return shapes["res4"].channels + 4 * shapes["res3"].channels


class PoseHead(nn.Module):
    """(N, C, h, w) stride-16 features -> (N, HEAD_CHANNELS, h, w): actor logit, pose, pelvis
    offset."""

    def __init__(self, in_channels: int = 272, channels: int = 96):
        super().__init__()
        layers = []
        for i, dilation in enumerate((1, 2, 4, 2, 1)):
            layers += [Conv2d(in_channels if i == 0 else channels, channels, 3, padding=dilation,
                              dilation=dilation, bias=False, norm=get_norm("BN", channels)),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.out = Conv2d(channels, HEAD_CHANNELS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def pose_map(head_out: torch.Tensor) -> torch.Tensor:
    """(N, HEAD_CHANNELS, h, w) head outputs -> (N, P + 1, h, w) pose map ``[a * pose, 1 - a]``."""
    a = torch.sigmoid(head_out[:, :1])
    return torch.cat([a * head_out[:, 1 : 1 + POSE_CHANNELS], 1.0 - a], dim=1)


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
    def __init__(self, *, trunk: EfficientNetLiteBackbone, head: PoseHead, frozen: bool = True,
                 mirror_test: bool = False):
        """
        Args:
            mirror_test: average the head's outputs with those of the mirror image of each frame,
                mirrored back (``mirror_head_outputs``): the poses become exactly mirror-
                equivariant, at twice the compute.
        """
        super().__init__()
        self.trunk, self.head = trunk, head
        self.frozen, self.mirror_test = frozen, mirror_test
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
        head = PoseHead(pose_input_channels(trunk), r.POSE.CHANNELS)
        if r.POSE.WEIGHTS:
            load_pose_head(head, r.POSE.WEIGHTS)
        return {"trunk": trunk, "head": head, "frozen": r.POSE.FROZEN,
                "mirror_test": r.POSE.MIRROR_TEST}

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.head.eval()
        return self

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res4": ShapeSpec(channels=POSE_CHANNELS + 1, stride=16)}

    def head_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, HEAD_CHANNELS, H/16, W/16) raw PoseHead outputs."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if not self.mirror_test:
                return self.head(pose_inputs(self.trunk(x)))
            width = x.shape[-1]
            if width % 16:  # the grid of the mirror image must fall on the frame's grid
                x = F.pad(x, (0, 16 - width % 16, 0, 0), mode="replicate")
            out = self.head(pose_inputs(self.trunk(x)))  # one pass after the other: flat memory
            return (out + mirror_head_outputs(self.head(pose_inputs(self.trunk(x.flip(-1)))))) / 2

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"res4": pose_map(self.head_outputs(x))}


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


@MICRO_REGISTRY.register()
class PoseTrack(nn.Module):
    """(M, 3, n, H, W) -> (M, n * HEAD_CHANNELS, H/16, W/16): per location and frame, in frame
    order, the actor probability, the pose (19) and the pelvis offset (in body heights). Nothing
    is pooled over time: the poses of every frame of the second and how far the actor moved
    (the offset's change at a location) are kept for the pose-kernel heads. Use it with NUM_MICRO 1
    (one sub-clip per second), so that the max over sub-clips (eq. 4) is the identity."""

    min_frames = 2

    @configurable
    def __init__(self, *, frames: PoseMapBackbone, num_frames: int):
        super().__init__()
        self.frames = frames
        self.num_frames = num_frames
        self.out_channels = num_frames * HEAD_CHANNELS

    @classmethod
    def from_config(cls, cfg):
        v = cfg.INPUT.VIDEO
        if v.NUM_MICRO != 1:
            raise ValueError("MODEL.RELOC.MICRO.NAME PoseTrack keeps every frame of a second in "
                             f"order: set INPUT.VIDEO.NUM_MICRO 1 (got {v.NUM_MICRO})")
        return {"frames": PoseMapBackbone(cfg), "num_frames": v.FPS}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        m, c, n, h, w = clips.shape
        if n != self.num_frames:
            raise ValueError(f"PoseTrack built for {self.num_frames} frames per second, got {n}")
        out = self.frames.head_outputs(clips.transpose(1, 2).reshape(m * n, c, h, w))
        out = torch.cat([torch.sigmoid(out[:, :1]), out[:, 1:]], dim=1)
        return out.reshape(m, n * HEAD_CHANNELS, *out.shape[2:])


def pose_targets_loss(head_out: torch.Tensor, actor: torch.Tensor, pose: torch.Tensor
                      ) -> Dict[str, torch.Tensor]:
    """Training losses of a PoseHead: binary cross-entropy of the actor logit at every cell, and
    the smooth-L1 errors of the pose and of the pelvis offset at the cells an actor covers.

    Args:
        head_out: (N, HEAD_CHANNELS, h, w); actor: (N, h, w) in {0, 1}; pose: (N, P + 1, h, w)
            targets (the pose, then the pelvis offset).
    """
    loss_actor = F.binary_cross_entropy_with_logits(head_out[:, 0], actor)
    m = actor.unsqueeze(1)
    err = F.smooth_l1_loss(head_out[:, 1:], pose, reduction="none", beta=0.1) * m
    n = m.sum().clamp(min=1.0)
    return {"loss_actor": loss_actor,
            "loss_pose": err[:, :POSE_CHANNELS].sum() / (n * POSE_CHANNELS),
            "loss_offset": err[:, POSE_CHANNELS:].sum() / n}
