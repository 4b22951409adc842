"""Pretrained-weight loading: torchvision / Caffe2 / detectron2 ResNets and PyTorchVideo I3D."""
import pickle
import re

import pytest
import torch
import torchvision
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone
from pytorchvideo.models.hub import i3d_r50

from relocnet import add_relocnet_config
from relocnet.modeling.backbone import I3D, build_spatial_resnet
from relocnet.modeling.weights import load_micro_weights, load_spatial_weights
from test_correlation import one_thread  # noqa: F401  (autouse: one torch thread)


def resnet_cfg(depth=50):
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256 if depth >= 50 else 64
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision puts the stride in the 3x3 conv
    return cfg


def randomized(model):
    """Random BN parameters and statistics too (conv weights are random already), so that
    every tensor's mapping matters."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and t.dim() == 1:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "running_var" in name
                        else torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def torchvision_res4(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer3(model.layer2(model.layer1(x)))


@pytest.mark.parametrize("depth,builder", [(50, torchvision.models.resnet50),
                                           (18, torchvision.models.resnet18)])
def test_torchvision_resnet(tmp_path, depth, builder):
    tv = randomized(builder(weights=None))
    path = tmp_path / f"r{depth}.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in tv.state_dict().items()}}, path)
    resnet = build_spatial_resnet(resnet_cfg(depth)).eval()
    report = load_spatial_weights(resnet, str(path))
    assert report.layout == "torchvision" and report.missing == []
    assert {"module.fc.weight", "module.layer4.0.conv1.weight"} <= set(report.unexpected)
    ours = resnet.state_dict()
    torch.testing.assert_close(ours["stem.conv1.weight"], tv.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(ours["res3.0.shortcut.norm.running_var"],
                               tv.layer2[0].downsample[1].running_var, rtol=0, atol=0)
    torch.testing.assert_close(ours["res4.1.conv2.norm.weight"], tv.layer3[1].bn2.weight,
                               rtol=0, atol=0)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(resnet(x)["res4"], torchvision_res4(tv, x), rtol=1e-4,
                                   atol=1e-4)


def _to_c2(name):
    """detectron2 ResNet name -> Caffe2/MSRA blob name (the layout of detectron2's R-50.pkl)."""
    name = re.sub(r"^stem\.conv1\.norm\.", "res_conv1.norm.", name)
    name = re.sub(r"^stem\.conv1\.", "conv1.", name)
    for d2, c2 in [("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c"),
                   ("shortcut", "branch1")]:
        name = name.replace(f".{d2}.", f".{c2}.")
    name = name.replace(".norm.weight", "_bn_s").replace(".norm.bias", "_bn_b")
    name = name.replace(".weight", "_w").replace(".bias", "_b")
    return name.replace(".", "_")


def test_caffe2_and_detectron2_pkl(tmp_path):
    source = randomized(build_spatial_resnet(resnet_cfg(50)))
    params = {k: v.numpy() for k, v in source.state_dict().items() if "running" not in k}
    c2 = {_to_c2(k): v for k, v in params.items()}
    assert "res2_0_branch2a_w" in c2 and "res_conv1_bn_s" in c2
    c2_path, d2_path = tmp_path / "R-50.pkl", tmp_path / "d2.pkl"
    c2_path.write_bytes(pickle.dumps({"blobs": c2, "model": c2, "__author__": "test"}))
    d2 = {"backbone.bottom_up." + k: v.numpy() for k, v in source.state_dict().items()}
    d2_path.write_bytes(pickle.dumps({"model": d2, "__author__": "test"}))

    target = build_spatial_resnet(resnet_cfg(50))
    report = load_spatial_weights(target, str(c2_path))
    assert report.layout == "caffe2" and report.unexpected == []
    assert set(report.missing) == {k for k in source.state_dict() if "running" in k}
    loaded, expected = target.state_dict(), source.state_dict()
    for k in params:
        torch.testing.assert_close(loaded[k], expected[k], rtol=0, atol=0)

    target = build_spatial_resnet(resnet_cfg(50))
    report = load_spatial_weights(target, str(d2_path))
    assert report.layout == "detectron2" and report.missing == [] and report.unexpected == []
    loaded = target.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


def test_pytorchvideo_i3d(tmp_path):
    ptv = randomized(i3d_r50(pretrained=False))
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": ptv.state_dict(), "epoch": 196}, path)
    micro = I3D(depth=50, width=64, out_channels=512)
    report = load_micro_weights(micro, str(path))
    assert report.layout == "pytorchvideo"
    assert report.missing == ["proj.weight", "proj.bias"]  # our projection is new
    assert report.unexpected and all(k.startswith(("blocks.5.", "blocks.6.")) for k in
                                     report.unexpected)  # res5 and the head are not used
    theirs = ptv.state_dict()
    for k, v in micro.state_dict().items():
        if not k.startswith("proj."):
            torch.testing.assert_close(v, theirs[k], rtol=0, atol=0)


def test_builder_loads_both_checkpoints(tmp_path):
    tv_path, ptv_path = tmp_path / "r50.pth", tmp_path / "i3d.pyth"
    tv = torchvision.models.resnet50(weights=None)
    torch.save(tv.state_dict(), tv_path)
    ptv = i3d_r50(pretrained=False)
    torch.save({"model_state": ptv.state_dict()}, ptv_path)
    cfg = resnet_cfg(50)
    cfg.MODEL.RELOC.SPATIAL_WEIGHTS = str(tv_path)
    cfg.MODEL.RELOC.MICRO.WEIGHTS = str(ptv_path)
    backbone = build_backbone(cfg)
    torch.testing.assert_close(backbone.spatial.res4[5].conv3.weight, tv.layer3[5].conv3.weight,
                               rtol=0, atol=0)
    torch.testing.assert_close(backbone.micro.blocks[4].res_blocks[5].branch2.conv_c.weight,
                               ptv.blocks[4].res_blocks[5].branch2.conv_c.weight, rtol=0, atol=0)


def test_errors_name_the_file_and_the_key(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    resnet = build_spatial_resnet(resnet_cfg(18))
    mismatch = r"bad\.pth.*'layer2\.0\.conv1\.weight'.*\(128, 64, 5, 5\)"
    with pytest.raises(ValueError, match=mismatch):
        load_spatial_weights(resnet, str(bad))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_spatial_weights(resnet, str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: cannot read"):
        load_spatial_weights(resnet, str(garbage))
    with pytest.raises(ValueError, match="i3d.pth: not a PyTorchVideo checkpoint"):
        torch.save({"model_state": state}, tmp_path / "i3d.pth")
        load_micro_weights(I3D(), str(tmp_path / "i3d.pth"))
    with pytest.raises(ValueError, match="not a ResNet checkpoint"):
        torch.save({"model_state": {"blocks.0.conv.weight": torch.zeros(1)}}, tmp_path / "x.pth")
        load_spatial_weights(resnet, str(tmp_path / "x.pth"))
