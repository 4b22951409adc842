"""The Siamese multi-scale video backbone (paper §3.1, eqs. 1-11).

For each 1-second sub-clip of N frames:
  spatial (eq. 1)   S    detectron2's ResNet on the keyframe (frame N // 2), res4, stride 16;
  micro (eqs. 2-5)  Tm   a 3D CNN on each of the NUM_MICRO micro sub-clips, max over time, then
                         the elementwise max over the micro sub-clips (concat + max);
  macro (eqs. 6-9)  hh   ConvLSTM_1 over the micro features, context attention pooling with
                         X_Vs = Tm, ConvLSTM_2 across the T seconds of the sample.
``features`` concatenates the scales named in MODEL.RELOC.FEATURES in the order spatial, macro,
micro (eq. 10); only the scales that are used (or feed a used one) are built and computed.
Query and reference go through the same module (Siamese weights).
"""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from torch import nn

from ..weights import load_micro_weights, load_spatial_weights
from .convlstm import MacroBranch
from .micro import build_micro_branch

__all__ = ["FEATURE_SCALES", "SiameseVideoBackbone", "build_siamese_video_backbone",
           "build_spatial_resnet", "build_relocnet_resnet_backbone"]

logger = logging.getLogger(__name__)

FEATURE_SCALES = ("spatial", "macro", "micro")  # the concatenation order of eq. 10
_BLOCKS_TO_RES4 = {18: [2, 2, 2], 34: [3, 4, 6], 50: [3, 4, 6], 101: [3, 4, 23], 152: [3, 8, 36]}


@BACKBONE_REGISTRY.register()
def build_relocnet_resnet_backbone(cfg, input_shape: Optional[ShapeSpec] = None) -> ResNet:
    """The ResNet spatial branch (MODEL.RELOC.SPATIAL_NAME), with MODEL.RELOC.SPATIAL_WEIGHTS."""
    resnet = build_spatial_resnet(cfg)
    if cfg.MODEL.RELOC.SPATIAL_WEIGHTS:
        load_spatial_weights(resnet, cfg.MODEL.RELOC.SPATIAL_WEIGHTS)
    return resnet


def build_spatial_resnet(cfg) -> ResNet:
    """Detectron2's ResNet up to res4 (stride 16) from MODEL.RESNETS.* and BACKBONE.FREEZE_AT.

    Unlike detectron2's ``build_resnet_backbone``, R-18/34 accept any RES2_OUT_CHANNELS (small
    CPU models). Widths double per stage from RES2_OUT_CHANNELS (res4 = 4 x RES2_OUT_CHANNELS).
    """
    r = cfg.MODEL.RESNETS
    if r.DEPTH not in _BLOCKS_TO_RES4:
        raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(_BLOCKS_TO_RES4)}, "
                         f"got {r.DEPTH}")
    if list(r.OUT_FEATURES) != ["res4"]:
        raise ValueError(f"the spatial branch outputs res4 (stride 16): set "
                         f"MODEL.RESNETS.OUT_FEATURES to ['res4'], got {list(r.OUT_FEATURES)}")
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError("MODEL.RESNETS.DEFORM_ON_PER_STAGE is not supported by relocnet")
    if r.DEPTH < 50 and r.NUM_GROUPS != 1:
        raise ValueError(f"MODEL.RESNETS.NUM_GROUPS must be 1 for R-{r.DEPTH}")
    stem = BasicStem(in_channels=3, out_channels=r.STEM_OUT_CHANNELS, norm=r.NORM)
    in_channels, out_channels = r.STEM_OUT_CHANNELS, r.RES2_OUT_CHANNELS
    bottleneck_channels = r.NUM_GROUPS * r.WIDTH_PER_GROUP
    stages = []
    for idx, num_blocks in enumerate(_BLOCKS_TO_RES4[r.DEPTH]):
        kwargs = dict(num_blocks=num_blocks, in_channels=in_channels, out_channels=out_channels,
                      stride_per_block=[1 if idx == 0 else 2] + [1] * (num_blocks - 1),
                      norm=r.NORM)
        if r.DEPTH < 50:
            kwargs["block_class"] = BasicBlock
        else:
            kwargs.update(block_class=BottleneckBlock, bottleneck_channels=bottleneck_channels,
                          stride_in_1x1=r.STRIDE_IN_1X1, num_groups=r.NUM_GROUPS)
        stages.append(ResNet.make_stage(**kwargs))
        in_channels, out_channels = out_channels, 2 * out_channels
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=["res4"], freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


def _check_features(features: Sequence[str]) -> List[str]:
    features = list(features)
    bad = [f for f in features if f not in FEATURE_SCALES]
    if not features or bad or len(set(features)) != len(features):
        raise ValueError(f"MODEL.RELOC.FEATURES must be a non-empty list of distinct scales among "
                         f"{FEATURE_SCALES}, got {features}")
    return features


class SiameseVideoBackbone(Backbone):
    """(B, T, 3, N, H, W) normalized clips -> {"res4", "features"}, each (B*T, C, H/16, W/16)."""

    @configurable
    def __init__(self, *, spatial: Backbone, micro: Optional[nn.Module] = None,
                 macro: Optional[MacroBranch] = None, features: Sequence[str], num_micro: int):
        """
        Args:
            spatial: 2D backbone with a "res4" output (stride 16), run on keyframes.
            micro: 3D CNN (M, 3, n, H, W) -> (M, C_m, H/16, W/16); needed by "micro" and "macro".
            macro: the ConvLSTM branch over micro features; needed by "macro".
            features: scales to concatenate into "features" (any of spatial, micro, macro).
            num_micro: micro sub-clips per second.
        """
        super().__init__()
        self.features = _check_features(features)
        if ("micro" in self.features or "macro" in self.features) and micro is None:
            raise ValueError(f"FEATURES {self.features} need a micro 3D CNN")
        if "macro" in self.features and macro is None:
            raise ValueError(f"FEATURES {self.features} need the macro ConvLSTM branch")
        if num_micro < 1:
            raise ValueError(f"num_micro must be >= 1, got {num_micro}")
        self.spatial = spatial
        self.micro = micro
        self.macro = macro if "macro" in self.features else None
        self.num_micro = num_micro
        channels = {"spatial": spatial.output_shape()["res4"].channels}
        if micro is not None:
            channels["micro"] = micro.out_channels
        if self.macro is not None:
            channels["macro"] = self.macro.out_channels
        self._res4_channels = channels["spatial"]
        self._channels = sum(channels[f] for f in self.features)

    @classmethod
    def from_config(cls, cfg, input_shape: Optional[ShapeSpec] = None):
        features = _check_features(cfg.MODEL.RELOC.FEATURES)
        num_micro = cfg.INPUT.VIDEO.NUM_MICRO
        micro = macro = None
        if "micro" in features or "macro" in features:
            micro = build_micro_branch(cfg)
            frames = cfg.INPUT.VIDEO.FPS // num_micro
            if frames < micro.min_frames:
                raise ValueError(
                    f"MODEL.RELOC.MICRO.NAME {cfg.MODEL.RELOC.MICRO.NAME} needs >= "
                    f"{micro.min_frames} frames per micro sub-clip; INPUT.VIDEO.FPS "
                    f"{cfg.INPUT.VIDEO.FPS} / NUM_MICRO {num_micro} gives {frames}")
        if "macro" in features:
            macro = MacroBranch(in_channels=micro.out_channels,
                                hidden_channels=cfg.MODEL.RELOC.MACRO.HIDDEN,
                                kernel_size=cfg.MODEL.RELOC.MACRO.KERNEL)
        spatial = BACKBONE_REGISTRY.get(cfg.MODEL.RELOC.SPATIAL_NAME)(cfg, input_shape)
        return {"spatial": spatial, "micro": micro, "macro": macro,
                "features": features, "num_micro": num_micro}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res4": ShapeSpec(channels=self._res4_channels, stride=16),
                "features": ShapeSpec(channels=self._channels, stride=16)}

    def _micro_features(self, clips: torch.Tensor) -> List[torch.Tensor]:
        """Eq. 2, the 3D CNN on each micro sub-clip (with its max over time, see micro.py):
        (S, 3, N, H, W) -> NUM_MICRO x (S, C_m, h, w).

        Sub-clips of equal length (np.array_split of the N frames) go through the 3D CNN in
        one batch."""
        s, n = clips.shape[0], clips.shape[2]
        splits = np.array_split(np.arange(n), self.num_micro)
        out: List[Optional[torch.Tensor]] = [None] * len(splits)
        for length in sorted({len(idx) for idx in splits}):
            members = [p for p, idx in enumerate(splits) if len(idx) == length]
            batch = torch.cat([clips[:, :, splits[p][0]: splits[p][-1] + 1] for p in members])
            for p, feats in zip(members, self.micro(batch).split(s)):
                out[p] = feats
        return out

    def forward(self, clips: torch.Tensor, keyframe_res4: bool = True) -> Dict[str, torch.Tensor]:
        """Eqs. 1, 4, 5, 10 and 11: the spatial branch on each second's keyframe, the micro
        features concatenated and maxed, and the scales concatenated (the same for query and
        reference clips: the backbone is Siamese).

        clips: (B, T, 3, N, H, W) normalized. Returns "res4" and "features", index b*T + t;
        ``keyframe_res4=False`` (a model with no use for "res4", e.g. no RPN) leaves "res4" out
        and skips the spatial branch when no feature scale needs it."""
        if clips.dim() != 6 or clips.shape[2] != 3:
            raise ValueError(f"expected clips of shape (B, T, 3, N, H, W), got "
                             f"{tuple(clips.shape)}")
        num_seconds, n = clips.shape[1], clips.shape[3]
        if n < self.num_micro:
            raise ValueError(f"{n} frames per second cannot form {self.num_micro} micro sub-clips")
        x = clips.flatten(0, 1)  # (B*T, 3, N, H, W)
        scales = {}
        if keyframe_res4 or "spatial" in self.features:
            scales["spatial"] = self.spatial(x[:, :, n // 2])["res4"]  # eq. 1 on the keyframe
        if "micro" in self.features or "macro" in self.features:
            tm_p = self._micro_features(x)
            tm = torch.stack(tm_p).amax(dim=0)  # eqs. 4-5: concat over p, max
            scales["micro"] = tm
            if self.macro is not None:
                scales["macro"] = self.macro(tm_p, tm, num_seconds)  # eqs. 6-9
        parts = [scales[name] for name in FEATURE_SCALES if name in self.features]
        if any(t.shape[-2:] != s.shape[-2:] for t in parts for s in scales.values()):
            raise ValueError(f"feature scales disagree in size: "
                             f"{[tuple(t.shape[-2:]) for t in scales.values()]}")
        features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # eq. 10
        out = {"features": features}
        if keyframe_res4:
            out["res4"] = scales["spatial"]
        return out


@BACKBONE_REGISTRY.register()
def build_siamese_video_backbone(cfg, input_shape: Optional[ShapeSpec] = None
                                 ) -> SiameseVideoBackbone:
    """Build the backbone and load MODEL.RELOC.MICRO.WEIGHTS when set (the spatial branch's
    builder loads MODEL.RELOC.SPATIAL_WEIGHTS)."""
    backbone = SiameseVideoBackbone(cfg, input_shape)
    if cfg.MODEL.RELOC.MICRO.WEIGHTS:
        if backbone.micro is None:
            logger.info("MODEL.RELOC.MICRO.WEIGHTS ignored: FEATURES %s use no micro 3D CNN",
                        backbone.features)
        else:
            load_micro_weights(backbone.micro, cfg.MODEL.RELOC.MICRO.WEIGHTS)
    return backbone
