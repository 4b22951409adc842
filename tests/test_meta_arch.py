"""RelocRCNN and RelocTemporal on tiny configs: train steps, inference outputs, windows, ablations,
checkpoints, determinism."""
import copy

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from relocnet import add_relocnet_config  # importing relocnet registers the models
from relocnet.modeling.meta_arch.common import RelocMetaArchBase

torch.set_num_threads(1)
H = W = 64
N = 3  # frames per second


def tiny_cfg(arch="RelocRCNN", **overrides):
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = arch
    # R-18 (res4: 4 x 16 channels), Light3D micro (16 channels), ConvLSTM hidden 8
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.RELOC.MICRO.NAME = "Light3D"
    cfg.MODEL.RELOC.MICRO.WIDTH = 4
    cfg.MODEL.RELOC.MICRO.OUT_CHANNELS = 16
    cfg.MODEL.RELOC.MACRO.HIDDEN = 8
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 50
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 12
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    cfg.INPUT.VIDEO.FPS = N
    cfg.INPUT.VIDEO.HEIGHT, cfg.INPUT.VIDEO.WIDTH = H, W
    cfg.INPUT.VIDEO.QUERY_SECONDS = 3
    cfg.MODEL.RELOC.HEAD.CHANNELS = 32
    cfg.MODEL.RELOC.HEAD.NUM_BLOCKS = 1
    cfg.MODEL.RELOC.HEAD.BATCH_SIZE_PER_IMAGE = 8
    for k, v in overrides.items():
        node, *path, leaf = k.split(".")
        target = cfg[node]
        for p in path:
            target = target[p]
        target[leaf] = v
    return cfg


def make_pair(seed=0, positive=True, tr=5, d=1, height=480, width=640):
    g = torch.Generator().manual_seed(seed)
    frames = lambda t: torch.randint(0, 256, (t, N, H, W, 3), generator=g, dtype=torch.uint8)
    match = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0] + [0.0] * (tr - 5))[:tr] * float(positive)
    instances = []
    for t in range(tr):
        inst = Instances((H, W))
        boxes = [[8.0 + t, 10.0, 40.0 + t, 50.0]] if match[t] else []
        inst.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        inst.gt_classes = torch.zeros(len(boxes), dtype=torch.long)
        instances.append(inst)
    qboxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 20.0, 60.0, 62.0]])[:d]
    return {
        "pair_id": f"p{seed}", "task": "spatio_temporal",
        "query": frames(3), "query_valid": torch.tensor([True, True, False]),
        "query_boxes": qboxes.expand(3, d, 4).clone(),
        "reference": frames(tr), "reference_seconds": torch.arange(20, 20 + tr),
        "match": match, "instances": instances,
        "height": height, "width": width, "input_size": (H, W),
    }


def train_step(model, pairs):
    model.train()
    with EventStorage() as storage:
        losses = model(pairs)
        sum(losses.values()).backward()
    return losses, storage


def backbone_has_grad(model):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("positive", [True, False])
def test_rcnn_train_step(positive):
    model = build_model(tiny_cfg())
    pair = make_pair(positive=positive)
    pair["actor_instances"] = copy.deepcopy(pair["instances"])  # the RPN's objects
    losses, storage = train_step(model, [pair, make_pair(seed=1, positive=positive)])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    num_fg = storage.history("roi_head/num_fg_samples").latest()
    assert (num_fg > 0) == positive
    assert (losses["loss_box_reg"] > 0) == positive
    assert backbone_has_grad(model)


@pytest.mark.parametrize("positive", [True, False])
def test_temporal_train_step(positive):
    model = build_model(tiny_cfg("RelocTemporal"))
    assert model.head.bbox_pred is None
    losses, _ = train_step(model, [make_pair(positive=positive), make_pair(seed=1)])
    assert set(losses) == {"loss_cls"} and torch.isfinite(losses["loss_cls"])
    assert backbone_has_grad(model)


@pytest.fixture(scope="module")
def rcnn():
    torch.manual_seed(0)
    return build_model(tiny_cfg()).eval()


def test_rcnn_inference_rescales_to_file_size(rcnn):
    pair = make_pair(d=2)
    same_size = dict(pair, height=H, width=W)
    out, ref = rcnn([pair])[0], rcnn([same_size])[0]
    inst = out["instances"]
    assert inst.image_size == (480, 640) and len(inst) > 0
    assert set(inst.get_fields()) >= {"pred_boxes", "scores", "seconds", "pred_classes"}
    assert torch.allclose(inst.pred_boxes.tensor, ref["instances"].pred_boxes.tensor * torch.tensor([10.0, 7.5, 10.0, 7.5]))
    assert set(inst.pred_classes.tolist()) <= {0, 1}
    assert out["seconds"].tolist() == list(range(20, 25))
    for t, s in zip(out["seconds"].tolist(), out["second_scores"].tolist()):
        here = inst.scores[inst.seconds == t]
        assert s == pytest.approx(float(here.max()) if len(here) else 0.0)
    assert out["segments"].shape[1] == 2 and len(out["segments"]) == len(out["segment_scores"]) >= 1


def test_correlation_maps_are_PD_by_W2_by_14_by_14(rcnn):
    seen = []
    hook = rcnn.roi_heads.head.matcher.register_forward_hook(
        lambda m, args, out: seen.append((args[0].shape[0], args[1].shape[0], tuple(out.shape)))
    )
    try:
        rcnn([make_pair(d=2)])
    finally:
        hook.remove()
    p, d, shape = seen[0]
    assert d == 2 and p > 0 and shape == (p * d, 49, 14, 14)


def test_eval_is_deterministic_and_checkpoint_round_trip(rcnn, tmp_path):
    pair = make_pair(seed=3)
    a, b = rcnn([pair])[0], rcnn([pair])[0]
    assert torch.equal(a["second_scores"], b["second_scores"])
    assert torch.equal(a["instances"].pred_boxes.tensor, b["instances"].pred_boxes.tensor)
    DetectionCheckpointer(rcnn, save_dir=str(tmp_path)).save("tiny")
    torch.manual_seed(123)
    fresh = build_model(tiny_cfg()).eval()
    assert not torch.equal(fresh([pair])[0]["second_scores"], a["second_scores"])
    DetectionCheckpointer(fresh).load(str(tmp_path / "tiny.pth"))
    c = fresh([pair])[0]
    assert torch.equal(a["second_scores"], c["second_scores"])
    assert torch.equal(a["instances"].pred_boxes.tensor, c["instances"].pred_boxes.tensor)


@pytest.mark.parametrize("arch", ["RelocRCNN", "RelocTemporal"])
def test_long_reference_windows(arch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(arch)).eval()
    assert (model.reference_seconds, model.window_overlap) == (5, 4)
    calls = []
    model.backbone.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    pair = make_pair(tr=13)
    out = model([pair])[0]
    assert out["second_scores"].shape == (13,) and out["seconds"].tolist() == list(range(20, 33))
    assert calls == [1, 4, 4, 1]  # the query, then 9 windows in batches of windows_per_batch=4
    if arch == "RelocTemporal":  # merged score = average over the windows covering the second
        def alone(s):
            sub = dict(pair, reference=pair["reference"][s : s + 5], reference_seconds=pair["reference_seconds"][s : s + 5])
            return model([sub])[0]["second_scores"]
        assert out["second_scores"][0] == pytest.approx(float(alone(0)[0]), abs=1e-6)
        expect = sum(float(alone(s)[4 - s]) for s in range(5)) / 5
        assert out["second_scores"][4] == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize("arch", ["RelocRCNN", "RelocTemporal"])
@pytest.mark.parametrize(
    "features,matcher",
    [(["spatial"], "correlation"), (["spatial", "micro"], "correlation"),
     (["spatial", "micro", "macro"], "correlation"), (["spatial", "micro", "macro"], "concat")],
)
def test_ablations_build_and_train(arch, features, matcher):
    cfg = tiny_cfg(arch, **{"MODEL.RELOC.FEATURES": features, "MODEL.RELOC.MATCHER": matcher})
    model = build_model(cfg)
    channels = {"spatial": 64, "micro": 16, "macro": 8}
    assert model.backbone.output_shape()["features"].channels == sum(channels[f] for f in features)
    losses, _ = train_step(model, [make_pair()])
    assert all(torch.isfinite(v) for v in losses.values()) and backbone_has_grad(model)
    out = model.eval()([make_pair(seed=2)])[0]
    assert out["second_scores"].shape == (5,)


def test_query_longer_than_query_seconds_and_bad_inputs(rcnn):
    pair = make_pair()
    long_query = dict(pair, query=torch.cat([pair["query"]] * 2), query_valid=torch.ones(6, dtype=torch.bool),
                      query_boxes=torch.cat([pair["query_boxes"]] * 2))
    assert rcnn([long_query])[0]["second_scores"].shape == (5,)
    with pytest.raises(ValueError, match="no valid second"):
        rcnn([dict(pair, query_valid=torch.zeros(3, dtype=torch.bool))])
    no_gt = {k: v for k, v in pair.items() if k != "instances"}
    with pytest.raises(ValueError, match="training needs 'instances'"):
        train_step(build_model(tiny_cfg()), [no_gt])
    with pytest.raises(ValueError, match="no box regression"):  # heads without box deltas
        build_model(tiny_cfg(**{"MODEL.RELOC.HEAD.NAME": "SimilarityHead"}))


def test_normalize_handles_input_format():
    frames = torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 1, 1, 1, 3)
    for fmt, first in (("RGB", 10.0), ("BGR", 30.0)):
        cfg = tiny_cfg("RelocTemporal", **{"INPUT.FORMAT": fmt, "MODEL.PIXEL_MEAN": [0.0] * 3,
                                           "MODEL.PIXEL_STD": [1.0] * 3})
        model = build_model(cfg)
        assert isinstance(model, RelocMetaArchBase)
        assert model.normalize(frames).flatten().tolist()[0] == first


def test_similarity_head_trains_and_is_bounded_by_its_affine_map():
    cfg = tiny_cfg("RelocTemporal", **{"MODEL.RELOC.HEAD.NAME": "SimilarityHead",
                                       "MODEL.RELOC.QUERY_POOLING": "seconds"})
    model = build_model(cfg)
    head = model.head
    losses, _ = train_step(model, [make_pair(), make_pair(seed=1, positive=False)])
    assert all(torch.isfinite(v) for v in losses.values()) and backbone_has_grad(model)
    assert head.embed.weight.grad is not None and head.sim_scale.grad is not None
    torch.manual_seed(0)
    # the soft maximum of cosines lies in [-1, 1]: logits within scale * ([-1, 1] - offset)
    ref, query = torch.randn(3, 64 + 16 + 8, 7, 7), torch.randn(2, 64 + 16 + 8, 7, 7)
    with torch.no_grad():
        logits = head.similarity_logits(ref, query)
        lo, hi = sorted([float(head.sim_scale * (-1 - head.sim_offset)),
                         float(head.sim_scale * (1 - head.sim_offset))])
    assert logits.shape == (3, 2) and lo <= logits.min() and logits.max() <= hi
    # identical inputs are at least as similar as anything else
    with torch.no_grad():
        same = head.similarity_logits(query[:1], query[:1])
    assert same.item() >= head.similarity_logits(ref, query[:1]).max().item()
    out = model.eval()([make_pair(seed=2)])[0]
    assert out["second_scores"].shape == (5,)


def test_seconds_query_pooling_is_temporal_only():
    with pytest.raises(ValueError, match="RelocTemporal"):
        build_model(tiny_cfg("RelocRCNN", **{"MODEL.RELOC.QUERY_POOLING": "seconds"}))


def test_aux_class_loss_labels_and_gradients():
    from relocnet.engine.trainer import index_labels

    cfg = tiny_cfg("RelocTemporal", **{"MODEL.RELOC.HEAD.NAME": "SimilarityHead",
                                       "MODEL.RELOC.QUERY_POOLING": "seconds",
                                       "MODEL.RELOC.AUX_CLASSES": 3,
                                       "MODEL.RELOC.AUX_LOSS_WEIGHT": 0.5})
    model = build_model(cfg)
    a, b = make_pair(), make_pair(seed=1)
    a["label_index"], b["label_index"] = 2, -1
    losses, _ = train_step(model, [a, b])
    assert "loss_aux_class" in losses and "loss_cls" in losses
    assert losses["loss_aux_class"] > 0 and model.head.aux_classifier.weight.grad.abs().sum() > 0
    b["label_index"] = -1
    losses, _ = train_step(model, [b])  # no labelled pair: zero, graph kept
    assert losses["loss_aux_class"] == 0
    a["label_index"] = 3
    with pytest.raises(ValueError, match="AUX_CLASSES"):
        train_step(model, [a])
    data = [{"label": "x"}, {"label": "a"}, {"label": ""}, {"self_supervised": True, "label": "z"}]
    assert index_labels(data, 2) == ["a", "x"]
    assert [d["label_index"] for d in data] == [1, 0, -1, -1]
    with pytest.raises(ValueError, match="AUX_CLASSES"):
        index_labels(data, 1)


@pytest.mark.parametrize("window", [13, 15, 5])
def test_similarity_gram_path_equals_eq15_soft_maximum(window):
    from relocnet.modeling.correlation import correlate_all_pairs

    cfg = tiny_cfg("RelocTemporal", **{"MODEL.RELOC.HEAD.NAME": "SimilarityHead",
                                       "MODEL.RELOC.CORR.WINDOW": window})
    head = build_model(cfg).head
    torch.manual_seed(0)
    ref, query = torch.randn(4, 88, 7, 7), torch.randn(3, 88, 7, 7)
    with torch.no_grad():
        got = head.similarity_logits(ref, query)
        r = torch.nn.functional.normalize(head.embed(ref), dim=1)
        q = torch.nn.functional.normalize(head.embed(query), dim=1)
        corr = correlate_all_pairs(r, q, window=window, normalize=False, impl="reference")
        t = head.temperature
        soft = t * (torch.logsumexp(corr.flatten(1) / t, 1) - torch.log(torch.tensor(corr[0].numel() * 1.0)))
        want = (head.sim_scale * (soft - head.sim_offset)).view(4, 3)
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
