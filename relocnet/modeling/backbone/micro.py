"""3D CNNs of the micro spatio-temporal branch (paper eqs. 2-3), picked by MODEL.RELOC.MICRO.NAME.

Every branch maps micro sub-clips ``(M, 3, n, H, W)`` to ``(M, OUT_CHANNELS, H/16, W/16)``:
3D CNN to stride 16, max over its time axis (eq. 3), then a 1x1 projection to OUT_CHANNELS.
"""
from typing import Tuple

import torch
from detectron2.config import configurable
from detectron2.utils.registry import Registry
from pytorchvideo.models.resnet import create_resnet
from torch import nn

__all__ = ["MICRO_REGISTRY", "build_micro_branch", "I3D", "Light3D"]

MICRO_REGISTRY = Registry("RELOC_MICRO")
MICRO_REGISTRY.__doc__ = """3D CNNs for micro sub-clips: (M, 3, n, H, W) -> (M, C_m, H/16, W/16)."""

# PyTorchVideo's "i3d_r50" hub model (Kinetics-400, 8x8): the same builder arguments, so that its
# checkpoints load into ``I3D.blocks`` key for key.
_I3D_ARGS = dict(
    stem_conv_kernel_size=(5, 7, 7),
    stage1_pool=nn.MaxPool3d,
    stage_conv_a_kernel_size=(
        (3, 1, 1),
        [(3, 1, 1), (1, 1, 1)],
        [(3, 1, 1), (1, 1, 1)],
        [(1, 1, 1), (3, 1, 1)],
    ),
)
_I3D_RES4_BLOCKS = 5  # PTV blocks: 0 stem, 1 res2, 2 temporal max-pool, 3 res3, 4 res4 (stride 16)


def _max_time_and_project(x: torch.Tensor, proj: nn.Module) -> torch.Tensor:
    """Eq. 3: max over the time axis of (M, C, t, h, w), then the 1x1 projection."""
    return proj(x.amax(dim=2))


@MICRO_REGISTRY.register()
class I3D(nn.Module):
    """PyTorchVideo's I3D-R50 (stem + res2..res4, stride 16), max over time, 1x1 projection.

    ``blocks`` keeps PyTorchVideo's module names ("blocks.0.conv.weight", ...), so a Kinetics
    checkpoint of ``pytorchvideo.models.hub.i3d_r50`` loads into it (see relocnet.modeling.weights).
    """

    min_frames = 2  # the temporal max-pool after res2 has kernel 2

    @configurable
    def __init__(self, *, depth: int = 50, width: int = 64, out_channels: int = 512):
        """
        Args:
            depth: ResNet depth of the 3D CNN (50, 101, 152).
            width: stem width; res4 has ``16 * width`` channels.
            out_channels: channels of Tm_p after the projection.
        """
        super().__init__()
        net = create_resnet(model_depth=depth, stem_dim_out=width, head=None, **_I3D_ARGS)
        self.blocks = nn.ModuleList(list(net.blocks)[:_I3D_RES4_BLOCKS])
        self.res4_channels = 16 * width
        self.out_channels = out_channels
        self.proj = nn.Conv2d(self.res4_channels, out_channels, 1)

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.RELOC.MICRO
        return {"depth": m.DEPTH, "width": m.WIDTH, "out_channels": m.OUT_CHANNELS}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips: (M, 3, n, H, W) -> (M, out_channels, H/16, W/16)."""
        x = clips
        for block in self.blocks:
            x = block(x)
        return _max_time_and_project(x, self.proj)


def _conv_bn_relu(c_in: int, c_out: int, stride: Tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


@MICRO_REGISTRY.register()
class Light3D(nn.Module):
    """A small 3D CNN for CPU configs: four 3x3x3 conv-BN-ReLU layers, each of spatial stride 2
    (widths w, 2w, 4w, 8w; time kept), max over time, 1x1 projection. MICRO.DEPTH is unused."""

    min_frames = 1

    @configurable
    def __init__(self, *, width: int = 16, out_channels: int = 128):
        super().__init__()
        widths = [3, width, 2 * width, 4 * width, 8 * width]
        self.layers = nn.Sequential(
            *[_conv_bn_relu(c_in, c_out, (1, 2, 2)) for c_in, c_out in zip(widths, widths[1:])]
        )
        self.out_channels = out_channels
        self.proj = nn.Conv2d(widths[-1], out_channels, 1)

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.RELOC.MICRO
        return {"width": m.WIDTH, "out_channels": m.OUT_CHANNELS}

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips: (M, 3, n, H, W) -> (M, out_channels, H/16, W/16)."""
        return _max_time_and_project(self.layers(clips), self.proj)


def build_micro_branch(cfg) -> nn.Module:
    """The 3D CNN named by MODEL.RELOC.MICRO.NAME."""
    return MICRO_REGISTRY.get(cfg.MODEL.RELOC.MICRO.NAME)(cfg)
