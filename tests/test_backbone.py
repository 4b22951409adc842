"""The Siamese multi-scale video backbone: shapes, scale selection, gradients, recurrence."""
import itertools

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from relocnet import add_relocnet_config
from relocnet.modeling.backbone import SiameseVideoBackbone
from test_correlation import one_thread  # noqa: F401  (autouse: one torch thread)

FPS, H, W = 6, 64, 96  # CPU config: 3 micro sub-clips of 2 frames, features 4 x 6
C_S, C_M, C_H = 64, 48, 16  # res4 = 4 x RES2_OUT_CHANNELS, micro OUT_CHANNELS, macro HIDDEN


def cpu_cfg(features=("spatial", "micro", "macro")):
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RELOC.MICRO.NAME = "Light3D"
    cfg.MODEL.RELOC.MICRO.WIDTH = 8
    cfg.MODEL.RELOC.MICRO.OUT_CHANNELS = C_M
    cfg.MODEL.RELOC.MACRO.HIDDEN = C_H
    cfg.MODEL.RELOC.FEATURES = list(features)
    cfg.INPUT.VIDEO.FPS = FPS
    return cfg


def clips(b=1, t=3, n=FPS, seed=0):
    return torch.randn(b, t, 3, n, H, W, generator=torch.Generator().manual_seed(seed))


def eval_backbone(features=("spatial", "micro", "macro"), seed=0):
    torch.manual_seed(seed)
    return build_backbone(cpu_cfg(features)).eval()


SUBSETS = [list(s) for r in (1, 2, 3) for s in itertools.combinations(
    ("spatial", "micro", "macro"), r)]


@pytest.mark.parametrize("features", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_shapes_for_every_feature_combination(features):
    backbone = eval_backbone(features)
    assert isinstance(backbone, SiameseVideoBackbone)
    channels = sum({"spatial": C_S, "micro": C_M, "macro": C_H}[f] for f in features)
    shapes = backbone.output_shape()
    assert (shapes["res4"].channels, shapes["res4"].stride) == (C_S, 16)
    assert (shapes["features"].channels, shapes["features"].stride) == (channels, 16)
    with torch.no_grad():
        out = backbone(clips(b=2, t=2))
    assert out["res4"].shape == (4, C_S, 4, 6)
    assert out["features"].shape == (4, channels, 4, 6)
    # only the scales in use are built
    assert (backbone.micro is None) == (features == ["spatial"])
    assert (backbone.macro is None) == ("macro" not in features)


def test_concatenation_order_is_spatial_macro_micro():
    backbone = eval_backbone(["micro", "spatial", "macro"])  # YAML order does not matter
    with torch.no_grad():
        x = clips()
        out = backbone(x)
        tm_p = backbone._micro_features(x.flatten(0, 1))
        tm = torch.stack(tm_p).amax(0)
    feats = out["features"]
    torch.testing.assert_close(feats[:, :C_S], out["res4"])
    torch.testing.assert_close(feats[:, C_S + C_H:], tm)  # eqs. 4-5: max over micro sub-clips
    # micro sub-clip p is frames [2p, 2p + 2) of each second (np.array_split convention)
    torch.testing.assert_close(tm_p[1], backbone.micro(x.flatten(0, 1)[:, :, 2:4]))


def test_spatial_branch_sees_only_the_keyframe():
    backbone = eval_backbone(["spatial"])
    x = clips()
    y = x.clone()
    y[:, :, :, [0, 1, 2, 4, 5]] = 0  # everything but frame N // 2 = 3
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["res4"], backbone(y)["res4"])


def test_uneven_micro_split():
    cfg = cpu_cfg()
    cfg.INPUT.VIDEO.FPS = 7  # sub-clips of 3, 2, 2 frames
    backbone = build_backbone(cfg).eval()
    x = clips(n=7)
    with torch.no_grad():
        out = backbone(x)
        tm_p = backbone._micro_features(x.flatten(0, 1))
    assert out["features"].shape == (3, C_S + C_H + C_M, 4, 6)
    torch.testing.assert_close(tm_p[0], backbone.micro(x.flatten(0, 1)[:, :, 0:3]))


def test_gradients_reach_every_branch():
    torch.manual_seed(0)
    backbone = build_backbone(cpu_cfg()).train()
    out = backbone(clips(b=2, t=2))
    (out["features"].square().mean() + out["res4"].mean()).backward()
    for name in ["spatial.stem.conv1.weight", "spatial.res4.1.conv2.weight",
                 "micro.layers.0.0.weight", "micro.proj.weight", "macro.lstm1.gates.weight",
                 "macro.pool.proj_x.weight", "macro.pool.score.weight",
                 "macro.lstm2.gates.weight"]:
        grad = dict(backbone.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_siamese_determinism_and_batch_independence():
    backbone = eval_backbone()
    query, reference = clips(seed=1), clips(seed=2)
    with torch.no_grad():
        q1, r1 = backbone(query)["features"], backbone(reference)["features"]
        q2 = backbone(query)["features"]
        both = backbone(torch.cat([query, reference]))["features"]
    assert torch.equal(q1, q2)
    torch.testing.assert_close(both, torch.cat([q1, r1]), rtol=1e-5, atol=1e-5)


def test_convlstm2_carries_state_forward_in_time_only():
    backbone = eval_backbone(["macro"])
    x = clips(t=3)
    changed_first, changed_last = x.clone(), x.clone()
    changed_first[:, 0] = torch.randn_like(x[:, 0])
    changed_last[:, 2] = torch.randn_like(x[:, 2])
    with torch.no_grad():
        base, first, last = (backbone(v)["features"] for v in (x, changed_first, changed_last))
    assert not torch.allclose(base[2], first[2])  # second 0 influences second 2
    torch.testing.assert_close(base[0], last[0], rtol=0, atol=0)  # second 2 cannot change 0
    torch.testing.assert_close(base[1], last[1], rtol=0, atol=0)


def test_paper_config_builds_and_runs():
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")  # R-50, I3D-R50, 24 fps, 1600 channels
    backbone = build_backbone(cfg).eval()
    assert backbone.output_shape()["features"].channels == 1024 + 64 + 512
    with torch.no_grad():
        out = backbone(torch.randn(1, 1, 3, 24, 64, 64))
    assert out["res4"].shape == (1, 1024, 4, 4)
    assert out["features"].shape == (1, 1600, 4, 4)


def test_freeze_at_and_registry():
    assert BACKBONE_REGISTRY.get("build_siamese_video_backbone") is not None
    cfg = cpu_cfg(["spatial"])
    cfg.MODEL.BACKBONE.FREEZE_AT = 2  # stem + res2
    backbone = build_backbone(cfg)
    frozen = {n for n, p in backbone.named_parameters() if not p.requires_grad}
    assert "spatial.stem.conv1.weight" in frozen and "spatial.res2.0.conv1.weight" in frozen
    assert "spatial.res3.0.conv1.weight" not in frozen


@pytest.mark.parametrize("change,match", [
    (lambda c: setattr(c.MODEL.RELOC, "FEATURES", ["spatial", "optical_flow"]), "FEATURES"),
    (lambda c: setattr(c.MODEL.RELOC, "FEATURES", []), "FEATURES"),
    (lambda c: setattr(c.MODEL.RELOC.MICRO, "NAME", "I3D"), "frames per micro sub-clip"),
    (lambda c: setattr(c.MODEL.RESNETS, "OUT_FEATURES", ["res5"]), "OUT_FEATURES"),
])
def test_bad_configs_fail_clearly(change, match):
    cfg = cpu_cfg()
    cfg.INPUT.VIDEO.FPS = 3  # one frame per micro sub-clip: too few for I3D
    change(cfg)
    with pytest.raises(ValueError, match=match):
        build_backbone(cfg)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, T, 3, N, H, W\)"):
        eval_backbone(["spatial"])(torch.randn(2, 3, 6, 64, 96))
