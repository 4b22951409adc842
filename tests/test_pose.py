"""Pose maps (relocnet/modeling/backbone/pose.py), their training on rendered frames, the
learnability probe and labelled-pair training / prediction on cached features."""
import argparse
import math
import os

import numpy as np
import pytest
import torch

from relocnet.data.synthetic.actions import R_SH, neutral_pose
from relocnet.data.synthetic.plan import PRESETS, TIERS, plan_clips, plan_split
from relocnet.engine.pose_training import (evaluate_pose_head, pose_vector, render_pose_samples,
                                           train_pose_head, trunk_features)
from relocnet.evaluation.learnability import pool_seconds, probe_accuracy, render_subclips
from relocnet.modeling.backbone.pose import POSE_CHANNELS, PoseHead, joint_turns, pose_map

DATA = os.path.join(os.path.dirname(__file__), "data", "synthreloc_tiny")
CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "synthreloc",
                      "relocnet_pose_cpu_temporal.yaml")


def _map_of(theta: float, actor: bool = True) -> torch.Tensor:
    """A 1x1 pose map of an actor whose image-right shoulder is at ``theta``."""
    p = neutral_pose()
    p[R_SH] = theta
    logit = 20.0 if actor else -20.0
    out = torch.cat([torch.tensor([logit]), torch.from_numpy(pose_vector(p))]).view(1, -1, 1, 1)
    return pose_map(out)


def test_pose_map_background_and_actor():
    bg = _map_of(0.3, actor=False)[0, :, 0, 0]
    assert torch.allclose(bg[:-1], torch.zeros(POSE_CHANNELS), atol=1e-6) and bg[-1] > 0.999
    a, b = _map_of(0.3)[0, :, 0, 0], _map_of(2.5)[0, :, 0, 0]
    cos = torch.nn.functional.cosine_similarity
    assert cos(a, a, dim=0) > cos(a, b, dim=0) > cos(a, bg, dim=0)
    assert abs(float(cos(a, bg, dim=0))) < 1e-3


def test_joint_turns_sign_follows_the_direction_of_rotation():
    up = torch.stack([_map_of(0.5), _map_of(0.7)], dim=1)  # (1, 2, P + 1, 1, 1)
    down = torch.stack([_map_of(0.7), _map_of(0.5)], dim=1)
    t_up, t_down = joint_turns(up)[0, 0, :, 0, 0], joint_turns(down)[0, 0, :, 0, 0]
    assert t_up[R_SH] == pytest.approx(math.sin(0.2), abs=1e-5)
    assert t_down[R_SH] == pytest.approx(-math.sin(0.2), abs=1e-5)
    others = [j for j in range(len(t_up)) if j != R_SH]
    assert torch.allclose(t_up[others], torch.zeros(len(others)), atol=1e-6)


def test_tiers_shape_the_references():
    easy, _ = plan_split(0, "test", PRESETS["tiny"], "easy")
    assert all(len(v.actors) == 1 and not v.occluders for v in easy)
    lo, hi = TIERS["easy"].heights
    for v in easy:
        a = v.actors[0]
        assert lo <= a.app.height <= max(hi, TIERS["easy"].query_heights[1])
        assert a.ground_y - a.app.height >= 0  # the standing body is inside the frame
    standard, _ = plan_split(0, "val", PRESETS["small"], "standard")
    assert max(len(v.actors) for v in standard) == 3
    with pytest.raises(ValueError, match="tier"):
        plan_split(0, "test", PRESETS["tiny"], "medium")


def test_pose_head_learns_rendered_frames():
    from relocnet.modeling.backbone.efficientnet import EfficientNetLiteBackbone

    torch.manual_seed(0)
    plans = plan_clips(0, ["squat", "hooray"], 2, 2)
    samples = render_pose_samples(plans, (64, 80), 2, seed=0)
    assert samples.frames.shape == (16, 64, 80, 3) and samples.pose.shape == (16, POSE_CHANNELS, 4, 5)
    assert 0.05 < samples.actor.mean() < 0.9  # actor cells and background cells
    trunk = EfficientNetLiteBackbone(weights="model_zoo:efficientnet_lite0", mirror_average=False)
    feats = trunk_features(trunk, samples.frames, [127.5] * 3, [127.5] * 3)
    head = PoseHead(feats.shape[1], 32)
    losses = train_pose_head(head, feats, samples, iterations=60, batch_size=8, lr=3e-3,
                             log_every=15)
    assert losses["loss_last"] < 0.6 * losses["loss_first"]
    metrics = evaluate_pose_head(head, feats, samples)
    assert metrics["actor_accuracy"] > 0.8


def test_probe_accuracy_separates_only_separable_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 40)
    groups = np.repeat(np.arange(30), 4)  # 10 videos per label, 4 seconds each
    centres = rng.normal(size=(3, 8)) * 3
    x = torch.tensor(centres[np.repeat(np.arange(3), 40)] + rng.normal(size=(120, 8)), dtype=torch.float32)
    good = probe_accuracy(x, labels, groups)
    assert good["accuracy"] == 1.0 and good["classes"] == 3 and good["test_seconds"] == 24
    noise = probe_accuracy(torch.randn(120, 8), labels, groups)
    assert noise["accuracy"] < 0.75


def test_render_subclips_matches_the_decoder_layout():
    plan = plan_clips(1, ["clap"], 1, 2)[0]
    frames = render_subclips(plan, 4, (32, 40))
    assert frames.shape == (plan.length, 4, 32, 40, 3) and frames.dtype == np.uint8
    assert pool_seconds(torch.rand(2, 5, 3, 3)).shape == (2, 10)


@pytest.fixture(scope="module")
def pose_model():
    from relocnet.engine.inference import load_model
    from relocnet.engine.setup import setup_cfg

    cfg = setup_cfg(argparse.Namespace(config_file=CONFIG, opts=[]), log=False)
    return cfg, load_model(cfg, "")


def test_cached_prediction_equals_streamed_relocalization(pose_model):
    """predict_cached (labelled-pair training's evaluation) gives relocalize's per-second scores."""
    from relocnet.data.pairs import load_pairs, resolve_video
    from relocnet.engine.cached_training import build_pair_feature_set, predict_cached
    from relocnet.engine.inference import prepare_query, relocalize

    torch.set_num_threads(2)
    cfg, model = pose_model
    v = cfg.INPUT.VIDEO
    pair_file = os.path.join(DATA, "pairs", "temporal_test.json")
    data = build_pair_feature_set(model, [pair_file], fps=v.FPS, size=(v.HEIGHT, v.WIDTH))
    first = load_pairs(pair_file)["pairs"][0]
    assert data.queries[0].pair_id == first["pair_id"]
    assert data.queries[0].positives() == tuple(tuple(s) for s in first["segments"])
    cached = predict_cached(model, data)[first["pair_id"]]
    query, _, _ = prepare_query(resolve_video(pair_file, first["query"]["video"]), fps=v.FPS,
                                size=(v.HEIGHT, v.WIDTH), query_seconds=v.QUERY_SECONDS)
    streamed = relocalize(model, query, resolve_video(pair_file, first["reference"]["video"]),
                          fps=v.FPS, size=(v.HEIGHT, v.WIDTH)).outputs
    assert torch.allclose(cached["second_scores"], streamed["second_scores"], atol=1e-5)
    assert cached["segments"].tolist() == streamed["segments"].tolist()


def test_train_cached_on_labelled_pairs_writes_weights_and_scores(tmp_path):
    import json
    import subprocess
    import sys

    pairs = os.path.join(DATA, "pairs", "temporal_test.json")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "..", "tools", "train_cached.py"),
         "--pairs", pairs, "--config-file", CONFIG, "--iterations", "3", "--batch-size", "2",
         "--output", str(out), "--cache-dir", str(tmp_path / "fs"), "--evaluate", pairs],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == len(json.load(open(pairs))["pairs"])
    scored = metrics["evaluation"][pairs]
    assert scored["num_pairs"] == metrics["queries"] and 0.0 <= scored["mean tIoU"] <= 100.0
    assert (out / "model_final.pth").is_file() and (out / "predictions_synthreloc_tiny_temporal_test.json").is_file()
    assert len(list((tmp_path / "fs").glob("*.pt"))) == 1  # one feature set: train == evaluate


def test_concat_head_scores_every_pair_and_learns_a_match():
    """V_concat: a (P, D) logit per pair, trainable to tell a matching pose map from another."""
    from relocnet.modeling.heads.concat_head import ConcatHead

    torch.manual_seed(0)
    head = ConcatHead(in_channels=POSE_CHANNELS + 1, channels=16)
    same, other = _map_of(0.3).expand(1, -1, 2, 2), _map_of(2.8).expand(1, -1, 2, 2)
    logits, deltas = head(torch.cat([same, other, same]), torch.cat([same, other]))
    assert logits.shape == (3, 2) and deltas is None
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(100):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            head(torch.cat([same, other, same]), torch.cat([same, other]))[0], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
