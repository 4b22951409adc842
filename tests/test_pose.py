"""Pose maps (relocnet/modeling/backbone/pose.py), their training on rendered frames, the
learnability probe and labelled-pair training / prediction on cached features."""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from relocnet.data.synthetic.actions import (JOINT_NAMES, R_SH, RANDOM_POSE, RANDOM_POSE_FOLDED,
                                             Instance, classes, folded_arms, neutral_pose,
                                             pose_at)
from relocnet.data.synthetic.plan import PRESETS, TIERS, plan_clips, plan_split
from relocnet.engine.pose_training import (evaluate_pose_head, pose_vector, render_pose_samples,
                                           train_pose_head, trunk_features)
from relocnet.evaluation.learnability import (clip_counts, clip_interval, match_accuracy,
                                              pool_seconds, probe_accuracy, render_subclips)
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_pose_head_learns_rendered_frames(precision):
    """train_pose.py --precision bf16 (autocast) learns as float32 does and keeps float32
    weights."""
    from relocnet.modeling.backbone.efficientnet import EfficientNetLiteBackbone

    torch.manual_seed(0)
    plans = plan_clips(0, ["squat", "hooray"], 2, 2)
    samples = render_pose_samples(plans, (64, 80), 2, seed=0)
    # targets: the pose, then the pelvis offset
    assert samples.frames.shape == (16, 64, 80, 3)
    assert samples.pose.shape == (16, POSE_CHANNELS + 1, 4, 5)
    assert 0.05 < samples.actor.mean() < 0.9  # actor cells and background cells
    trunk = EfficientNetLiteBackbone(weights="model_zoo:efficientnet_lite0", mirror_average=False)
    feats = trunk_features(trunk, samples.frames, [127.5] * 3, [127.5] * 3)
    with pytest.raises(ValueError, match="no frames"):
        trunk_features(trunk, samples.frames[:0], [127.5] * 3, [127.5] * 3)
    head = PoseHead(feats.shape[1], 32)
    losses = train_pose_head(head, feats, samples, iterations=60, batch_size=8, lr=3e-3,
                             precision=precision, log_every=15)
    assert losses["loss_last"] < 0.6 * losses["loss_first"]
    assert all(v.dtype == torch.float32 for v in head.state_dict().values() if v.is_floating_point())
    metrics = evaluate_pose_head(head, feats, samples)
    assert metrics["actor_accuracy"] > 0.8
    per_joint = metrics["median_error_deg_per_joint"]
    assert list(per_joint) == list(JOINT_NAMES) and all(0 <= v <= 180 for v in per_joint.values())


def test_pose_head_training_rejects_an_unknown_precision():
    samples = render_pose_samples(plan_clips(0, ["squat"], 1, 2), (64, 80), 1, seed=0)
    feats = torch.zeros(len(samples.frames), 8, 4, 5, dtype=torch.float16)
    with pytest.raises(ValueError, match="precision 'fp16'"):
        train_pose_head(PoseHead(8, 8), feats, samples, iterations=1, precision="fp16")


def test_pose_samples_rendered_in_worker_processes_are_the_same_frames():
    """train_pose.py --workers: plans rendered in parallel processes give exactly the frames,
    JPEG qualities and targets one process gives (the draws are made first, in plan order)."""
    plans = plan_clips(3, ["wave_fast", "walk_left"], 2, 2)
    one = render_pose_samples(plans, (64, 80), 2, seed=5)
    two = render_pose_samples(plans, (64, 80), 2, seed=5, workers=2)
    for field in ("frames", "actor", "pose"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))
    other = render_pose_samples(plans, (64, 80), 2, seed=6)  # the seed draws the frames
    assert not np.array_equal(one.frames, other.frames)


def _train_pose_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "relocnet_tools_train_pose", os.path.join(os.path.dirname(__file__), "..", "tools",
                                                  "train_pose.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_train_pose_refuses_a_missing_gpu_and_no_workers(capsys):
    """train_pose.py stops with one line before rendering anything: --device cuda where torch sees
    no GPU, --workers below 1."""
    tool = _train_pose_tool()
    cases = [(["--workers", "0"], "--workers 0: at least 1 process renders")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda: torch sees no GPU"))
    for argv, says in cases:
        with pytest.raises(SystemExit):
            tool.main(argv + ["--output", "/nonexistent/never-written"])
        assert says in capsys.readouterr().err


def test_train_pose_end_to_end_writes_a_loadable_head(tmp_path):
    """The whole recipe on the tiny preset in bfloat16: the head file loads into the model's
    PoseHead, metrics.json counts the frames trained on (with their mirror images) and the
    probes."""
    from relocnet.modeling.backbone.pose import load_pose_head

    out = tmp_path / "pose"
    assert _train_pose_tool().main(
        ["--preset", "tiny", "--tiers", "easy", "--per-second", "1", "--random-clips", "2",
         "--random-seconds", "2", "--folded-clips", "2", "--bent-clips", "2", "--raised-clips", "2",
         "--iterations", "3", "--channels", "16", "--precision", "bf16", "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    tiny = sum(p.length for p in plan_split(0, "train", PRESETS["tiny"], "easy")[0])
    assert metrics["frames"] == 2 * (tiny + 4 * 2 * 2)  # 1 frame per second, mirrored
    assert metrics["precision"] == "bf16" and metrics["loss_first"] > 0  # 3 steps: ~0 s
    assert {"val", "new_random_poses", "new_folded_poses", "new_raised_poses"} <= set(metrics)
    load_pose_head(PoseHead(272, 16), str(out / "pose_head.pth"))


def _drill_poses(name: str, seed: int = 0) -> np.ndarray:
    """(900, POSE_DIM) poses of a pose-head drill: 100 random instances at 9 times over 2 s; each
    drill is deterministic, finite, and never a query class."""
    rng = np.random.default_rng(seed)
    p = np.stack([pose_at(name, t, Instance(phase=float(rng.random())))
                  for _ in range(100) for t in np.linspace(0, 2, 9)])
    assert np.isfinite(p).all()
    assert name not in {a.name for a in classes()}
    same = Instance(phase=0.3)
    np.testing.assert_array_equal(pose_at(name, 0.5, same), pose_at(name, 0.5, same))
    return p


def test_random_folded_poses_fold_forearms_in_front_of_the_body():
    folded, plain = _drill_poses(RANDOM_POSE_FOLDED), _drill_poses(RANDOM_POSE, seed=1)
    assert folded_arms(folded).mean() > 0.5 > 0.15 > folded_arms(plain).mean()
    both = folded_arms(folded).all(-1).mean()
    assert 0.2 < both < 0.7  # arms fold independently: one folded arm, both, or none


def test_random_bent_poses_half_bend_both_arms_in_front():
    """random_pose_bent: both arms half bent in front of the body (shoulder -0.6 to 1.0 rad,
    elbow -1.7 to -0.4 rad, as in a clap) far more often than in random_pose, which has them
    in 2 % of its frames; a drill for the pose head, never a query class; deterministic."""
    from relocnet.data.synthetic.actions import L_EL, L_SH, R_EL, RANDOM_POSE_BENT

    def both_in_front(p):
        el, sh = p[:, [L_EL, R_EL]], p[:, [L_SH, R_SH]]
        return ((el > -1.7) & (el < -0.4) & (sh > -0.6) & (sh < 1.0)).all(-1).mean()

    assert (both_in_front(_drill_poses(RANDOM_POSE_BENT)) > 0.3 > 0.05
            > both_in_front(_drill_poses(RANDOM_POSE, seed=1)))


def test_random_raised_poses_raise_arms_and_swing_the_forearm_both_ways():
    """random_pose_raised: an arm raised (shoulder 1.7 to 3.1 rad) with its elbow swinging past
    straight both ways (the wave's forearm, -0.5 to 0.8 rad) far more often than in random_pose,
    whose elbows stop at 0.5 rad; a drill for the pose head, never a query class; deterministic."""
    from relocnet.data.synthetic.actions import L_EL, L_SH, R_EL, RANDOM_POSE_RAISED

    def raised(p):
        sh, el = p[:, [L_SH, R_SH]], p[:, [L_EL, R_EL]]
        up = (sh > 1.7) & (sh < 3.3)
        return up.mean(), (up & (el > 0.5)).mean(), (up & (el < -0.3)).mean(), el.max()

    up, bent_out, bent_in, top = raised(_drill_poses(RANDOM_POSE_RAISED))
    plain_up, plain_out, _, plain_top = raised(_drill_poses(RANDOM_POSE, seed=1))
    assert up > 0.5 > 0.3 > plain_up
    assert bent_out > 0.03 and bent_in > 0.1  # the forearm bends both ways while raised
    assert plain_out == 0 and plain_top <= 0.5 < top <= 0.9


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


class _DistanceHead(torch.nn.Module):
    """Logit: minus the distance between the mean features of a second and of the query's."""

    def forward(self, ref, query):
        return -torch.cdist(ref.mean((2, 3)), query.mean((2, 3))), None


def test_match_accuracy_is_the_heads_own_nearest_neighbour():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 40)
    groups = np.repeat(np.arange(30), 4)  # 10 clips per label, 4 seconds each
    centres = rng.normal(size=(3, 8)) * 3
    x = centres[np.repeat(np.arange(3), 40)] + rng.normal(size=(120, 8))
    rois = list(torch.tensor(x, dtype=torch.float32).view(30, 4, 8, 1, 1))
    good = match_accuracy(_DistanceHead(), rois, labels, groups)
    assert good["accuracy"] == 1.0 and good["classes"] == 3 and good["train_clips"] == 24
    assert good["per_class"]["a"] == {"accuracy": 1.0, "taken_for": None}
    assert good["accuracy_95"] == [100.0, 100.0] and good["test_clips"] == 6
    noise = match_accuracy(_DistanceHead(), list(torch.randn(30, 4, 8, 1, 1)), labels, groups)
    assert noise["accuracy"] < 0.75
    low, high = noise["accuracy_95"]
    assert 0 <= low < 100 * noise["accuracy"] < high <= 100
    # the split is the linear probe's: the same test seconds
    assert good["test_seconds"] == probe_accuracy(torch.tensor(x), labels, groups)["test_seconds"]


def test_clip_interval_resamples_whole_clips():
    # 4 clips of 5 seconds: two all right, two all wrong -> each draw's accuracy is a multiple
    # of 25 %, never the 10 % or 90 % a draw of single seconds could give
    correct = np.repeat([True, True, False, False], 5)
    groups = np.repeat([7, 3, 9, 1], 5)
    clips = clip_counts(correct, groups)
    assert clips == [(0, 5), (5, 5), (5, 5), (0, 5)]  # groups 1, 3, 7, 9
    low, high = clip_interval([clips], samples=4000)
    assert low == 0.0 and high == 100.0
    low, high = clip_interval([clips], level=0.5, samples=4000)
    assert {low % 25, high % 25} == {0.0} and low < 50 < high
    # more clips of the same kind: narrower, whether in one set or in eight sets (seeds)
    low8, high8 = clip_interval([clip_counts(np.tile(correct, 8), np.repeat(np.arange(32), 5))])
    assert 20 < low8 < 50 < high8 < 80
    low8s, high8s = clip_interval([clips] * 8)
    assert abs(low8s - low8) < 8 and abs(high8s - high8) < 8
    # sets resampled on their own: a set all right and a set all wrong never mix into 0 or 100
    assert clip_interval([[(5, 5)] * 4, [(0, 5)] * 4]) == [50.0, 50.0]


def test_learnability_tool_over_several_clip_seeds(tmp_path):
    """tools/learnability.py --seed 0 1: each seed's check on its own clips, then their mean and
    the pooled interval (true poses: no pixels rendered)."""
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "learnability.py")
    out = tmp_path / "l.json"
    run = subprocess.run([sys.executable, tool, "--true-poses", "--per-class", "5", "--seconds", "2",
                          "--seed", "0", "1", "--output", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    seeds, mean = result["seeds"], result["mean"]
    assert list(seeds) == ["0", "1"]
    accs = [seeds[s]["head_match"]["accuracy"] for s in seeds]
    assert mean["head_match"] == pytest.approx(np.mean(accs))
    assert seeds["0"]["head_match"]["clips"] != seeds["1"]["head_match"]["clips"]  # other clips
    low, high = mean["head_match_95"]
    assert low <= 100 * mean["head_match"] <= high
    assert sum(n for s in seeds for _, n in seeds[s]["head_match"]["clips"]) == sum(
        seeds[s]["head_match"]["test_seconds"] for s in seeds)
    twice = subprocess.run([sys.executable, tool, "--true-poses", "--seed", "2", "2"],
                           capture_output=True, text=True)
    assert twice.returncode == 2 and "--seed 2 2: a seed given twice" in twice.stderr


def test_match_accuracy_of_the_pose_sequence_head_on_true_poses():
    """The shipped matching rule tells apart classes that differ in pose, in speed, and only in
    the order of their movements, from the renderer's poses (each clip its own actor)."""
    from relocnet.evaluation.pose_oracle import true_pose_track
    from relocnet.modeling.heads.pose_kernel_head import PoseSequenceHead

    names = ["clap", "side_step_left", "side_step_right", "punch_llr", "punch_rrl"]
    plans = plan_clips(3, names, 5, 3)
    rois = [true_pose_track(p, 8) for p in plans]
    labels = [p.actors[0].segments[0].name for p, r in zip(plans, rois) for _ in range(len(r))]
    groups = [i for i, r in enumerate(rois) for _ in range(len(r))]
    head = PoseSequenceHead(frames=8, sigma=0.05, speed_weight=1.0)
    result = match_accuracy(head, rois, labels, groups)
    assert result["classes"] == 5 and result["accuracy"] >= 0.9, result


def test_render_subclips_matches_the_decoder_layout():
    plan = plan_clips(1, ["clap"], 1, 2)[0]
    frames = render_subclips(plan, 4, (32, 40))
    assert frames.shape == (plan.length, 4, 32, 40, 3) and frames.dtype == np.uint8
    assert pool_seconds(torch.rand(2, 5, 3, 3)).shape == (2, 10)


@pytest.fixture(scope="module", params=["relocnet_pose_cpu", "relocnet_posetrack_cpu"])
def pose_model(request):
    """The pose-map model family and the shipped pose-track model (untrained heads)."""
    from relocnet.engine.inference import load_model
    from relocnet.engine.setup import setup_cfg

    config = CONFIG.replace("relocnet_pose_cpu", request.param)
    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=[]), log=False)
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
    # a video cache shared between files (train_cached --evaluate temporal and spatio-temporal
    # files of a benchmark): the second file's videos are not computed again, the features equal
    import relocnet.engine.cached_training as ct
    videos, calls, real = {}, [], ct.second_rois
    try:
        ct.second_rois = lambda *a, **k: calls.append(1) or real(*a, **k)
        build_pair_feature_set(model, [pair_file], fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                               video_cache=videos)
        first_calls = len(calls)
        st_file = os.path.join(DATA, "pairs", "spatio_temporal_test.json")
        again = build_pair_feature_set(model, [st_file], fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                                       video_cache=videos)
    finally:
        ct.second_rois = real
    assert first_calls == len(videos) > 0 and len(calls) == first_calls
    assert all(torch.equal(a, b) for a, b in zip(data.videos, again.videos))
    assert [q.pair_id for q in again.queries] == [q.pair_id for q in data.queries]


def test_train_cached_on_labelled_pairs_writes_weights_and_scores(tmp_path):

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


def test_train_cached_refuses_a_config_key_among_the_pair_files_before_any_work(tmp_path):
    """``--evaluate`` takes every word after it: an override written there is named at once
    (it used to fail as a missing file after every evaluation had run), and nothing is written."""

    pairs = os.path.join(DATA, "pairs", "temporal_test.json")
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "train_cached.py")
    out = tmp_path / "run"
    for tail, says in ((["MODEL.RELOC.POSE.WEIGHTS", "w.pth"],
                        "config key MODEL.RELOC.POSE.WEIGHTS"),
                       ([str(tmp_path / "missing.json")], "missing.json: no such pair file")):
        proc = subprocess.run([sys.executable, tool, "--pairs", pairs, "--output", str(out),
                               "--evaluate", pairs, *tail], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode != 0 and says in proc.stderr.strip().splitlines()[-1]
        assert not out.exists()


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


def _pairs_of(plans, pair_plans):
    """Pair-file entries for planned pairs (segments: the runs of the class in the reference)."""
    from relocnet.data.synthetic.plan import class_runs

    by_name = {p.name: p for p in plans}
    return [{"pair_id": pp.pair_id, "label": pp.label,
             "query": {"video": pp.query, "start": 0.0, "end": float(by_name[pp.query].length)},
             "reference": {"video": pp.reference, "start": 0.0,
                           "end": float(by_name[pp.reference].length)},
             "segments": [[float(s), float(e)]
                          for s, e in class_runs(by_name[pp.reference], pp.label)]}
            for pp in pair_plans]


def test_pose_track_head_on_true_poses_finds_the_action():
    """The ceiling check of tools/pose_oracle.py: with the renderer's poses in place of the pose
    head's, the pose-track model's head and decoder localize the easy tier's unseen classes."""
    from relocnet.engine.inference import load_model
    from relocnet.engine.setup import setup_cfg
    from relocnet.evaluation.metrics import temporal_metrics
    from relocnet.evaluation.pose_oracle import oracle_outputs
    from relocnet.evaluation.predictions import entries_from_output

    config = CONFIG.replace("relocnet_pose_cpu", "relocnet_posetrack_cpu")
    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=["MODEL.RELOC.POSE.WEIGHTS", ""]),
                    log=False)
    model = load_model(cfg, "")  # the untrained kernel
    plans, pair_plans = plan_split(0, "test", PRESETS["small"], "easy")
    pairs = _pairs_of(plans, pair_plans[:12])
    outputs = oracle_outputs(model, {p.name.split("/")[-1]: p for p in plans}, pairs)
    preds = {k: entries_from_output(o, "temporal") for k, o in outputs.items()}
    assert temporal_metrics(pairs, preds)["R@1,tIoU>0.5"] >= 90.0
    # the speed term tells side steps left from right: flip the query's direction and it fails
    from relocnet.evaluation.pose_oracle import true_pose_track
    side = next(p for p in pairs if p["label"].startswith("side_step"))
    by_name = {p.name.split("/")[-1]: p for p in plans}
    ref = true_pose_track(by_name[side["reference"]["video"].split("/")[-1]], 8)
    q = true_pose_track(by_name[side["query"]["video"].split("/")[-1]], 8, (0,))
    flipped = q.clone().view(q.shape[0], 8, -1, 1, 1)
    flipped[:, :, -1] *= -1.0
    s, e = (int(v) for v in side["segments"][0])
    with torch.no_grad():
        same = model.head.scores(ref, q)[s:e].amax(1).mean()
        other = model.head.scores(ref, flipped.view_as(q))[s:e].amax(1).mean()
    assert same > 0.8 > 0.3 > other


def test_pose_kernel_head_ignores_where_the_actor_is_and_needs_the_track_features():
    from relocnet.engine.setup import setup_cfg
    from relocnet.evaluation.pose_oracle import true_pose_track
    from relocnet.modeling.heads.pose_kernel_head import PoseKernelHead

    plans, _ = plan_split(0, "test", PRESETS["tiny"], "easy")
    track = true_pose_track(plans[0], 8)  # (T, 8 * 21, 1, 1): one location, the actor
    here = torch.zeros(track.shape[0], track.shape[1], 2, 3)  # a 2 x 3 grid with no actor ...
    there = here.clone()
    here[:, :, 0, 1] = track[:, :, 0, 0]  # ... but at one location, here or there
    there[:, :, 1, 2] = track[:, :, 0, 0]
    head = PoseKernelHead(frames=8)
    with torch.no_grad():
        a, b = head.scores(here, track[:3]), head.scores(there, track[:3])
        empty = head.scores(torch.zeros_like(here), track[:3])
    assert torch.allclose(a, b) and float(a.max()) > 0.9 and float(empty.max()) == 0.0
    config = CONFIG.replace("relocnet_pose_cpu", "relocnet_posetrack_cpu")
    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=["MODEL.RELOC.POSE.WEIGHTS", ""]),
                    log=False)
    with pytest.raises(ValueError, match="PoseTrack features alone"):
        PoseKernelHead(cfg, in_channels=20 + 8 * 21)


def test_pose_targets_follow_the_pelvis():
    """At a location the actor covers one second apart, the offset target changes by how far the
    actor walked (in body heights): positive towards image-right."""
    from relocnet.data.synthetic.scene import FPS, SceneRenderer, Timeline
    from relocnet.engine.pose_training import _targets

    plan = plan_clips(0, ["walk_right"], 1, 3)[0]
    r = SceneRenderer(plan)
    (a0, p0), (a1, p1) = (_targets(r, r.render(i, measure=True)[1], i, (8, 10))
                          for i in (6, 6 + FPS))
    both = (a0 > 0) & (a1 > 0)
    assert both.sum() >= 3
    moved = float((p1[POSE_CHANNELS] - p0[POSE_CHANNELS])[both].mean())
    tl, actor = Timeline(plan.actors[0]), plan.actors[0]
    walked = (tl.state((6 + FPS) / FPS)[1] - tl.state(6 / FPS)[1]) / actor.app.height
    assert walked > 0.1 and moved == pytest.approx(walked, rel=0.25)


def test_actor_region_box_follows_the_actor_map():
    from relocnet.modeling.heads.pose_kernel_head import actor_region_box

    a = torch.zeros(4, 5)
    a[1:3, 1:3] = 1.0
    box = actor_region_box(a, 1 * 5 + 1)  # edges halfway to the empty neighbours
    assert box.tolist() == pytest.approx([1 / 5, 1 / 4, 3 / 5, 3 / 4])
    a[1:3, 3] = 0.75  # a fainter column joins the region; the edge moves a third of a cell out
    assert actor_region_box(a, 6)[2] == pytest.approx((3.5 + 0.25 / 0.75) / 5)
    a[0, 4] = 0.9  # another actor, not connected: not in the box
    assert actor_region_box(a, 6)[1] == pytest.approx(1 / 4)
    no_actor = actor_region_box(torch.zeros(4, 5), 7)  # the start cell itself
    assert no_actor.tolist() == pytest.approx([0.4, 0.25, 0.6, 0.5])


def _cached_spatio_temporal_pairs(config_name: str, n: int):
    """(cfg, model with the untrained kernel, the tiny set's first ``n`` spatio-temporal test
    pairs, their cached features)."""
    from relocnet.data.pairs import load_pairs
    from relocnet.engine.cached_training import build_pair_feature_set
    from relocnet.engine.inference import load_model
    from relocnet.engine.setup import setup_cfg

    torch.set_num_threads(2)
    config = os.path.join(os.path.dirname(CONFIG), config_name + ".yaml")
    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=[]), log=False)
    model = load_model(cfg, "")
    v = cfg.INPUT.VIDEO
    pair_file = os.path.join(DATA, "pairs", "spatio_temporal_test.json")
    data = build_pair_feature_set(model, [pair_file], fps=v.FPS, size=(v.HEIGHT, v.WIDTH))
    data.queries = data.queries[:n]
    return cfg, model, load_pairs(pair_file)["pairs"][:n], data


def test_spatio_temporal_detections_from_cached_pose_tracks():
    """predict_cached_boxes: one detection per reference second, in the reference's pixels;
    heads that do not locate actors are refused."""
    from relocnet.engine.cached_training import predict_cached_boxes

    _, model, pairs, data = _cached_spatio_temporal_pairs("relocnet_posetrack_cpu_temporal", 2)
    preds = predict_cached_boxes(model, data, {str(p["pair_id"]): (160, 120) for p in pairs})
    for p in pairs:
        dets = preds[str(p["pair_id"])]
        assert [d["second"] for d in dets] == list(range(int(p["reference"]["end"])))
        for d in dets:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120 and 0 <= d["score"] <= 1
    model.head = torch.nn.Identity()
    with pytest.raises(ValueError, match="does not locate actors"):
        predict_cached_boxes(model, data, {})


def test_detections_outside_the_top_segment_are_weighed_down():
    """DECODER.OUTSIDE_WEIGHT: a detection keeps its match probability inside the pair's top
    segment and is scaled by the weight in every other second; 1 leaves them all alone. The
    weight must lie in [0, 1]."""
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances

    from relocnet.engine.cached_training import pair_outputs, predict_cached_boxes
    from relocnet.modeling.meta_arch import RelocPoseTrack

    cfg, model, pairs, data = _cached_spatio_temporal_pairs("relocnet_posetrack_cpu_temporal", 2)
    assert cfg.MODEL.RELOC.DECODER.OUTSIDE_WEIGHT == 0.2  # the shipped pose-track configs
    sizes = {str(p["pair_id"]): (160, 120) for p in pairs}
    weighed = predict_cached_boxes(model, data, sizes)
    model.outside_weight = 1.0
    plain = predict_cached_boxes(model, data, sizes)
    outside = 0
    for q in data.queries:
        start, end = pair_outputs(model, data.videos[q.video], q.rois)["segments"][0].tolist()
        for w, p in zip(weighed[q.pair_id], plain[q.pair_id]):
            assert w["box"] == p["box"]
            inside = start <= w["second"] < end
            outside += not inside
            assert w["score"] == pytest.approx(p["score"] * (1.0 if inside else 0.2), abs=1e-6)
    assert outside > 0  # the tiny references are longer than their top segments
    # the streamed outputs: absolute seconds that do not start at 0, one detection per second
    model.outside_weight = 0.2
    probs = torch.tensor([0.1, 0.2, 0.9, 0.95, 0.9, 0.2])
    seconds = torch.arange(10, 16)
    results = [{"second_score": p, "instances": Instances(
        (120, 160), pred_boxes=Boxes(torch.tensor([[0.0, 0.0, 10.0, 20.0]])),
        scores=torch.tensor([0.5]), pred_classes=torch.zeros(1, dtype=torch.long))}
        for p in probs]
    out = RelocPoseTrack.outputs(model, results, seconds)
    assert out["segments"][0].tolist() == [12.0, 15.0]
    assert out["instances"].seconds.tolist() == list(range(10, 16))
    assert out["instances"].scores.tolist() == pytest.approx([0.1, 0.1, 0.5, 0.5, 0.5, 0.1])
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RELOC.DECODER.OUTSIDE_WEIGHT = 1.5
    with pytest.raises(ValueError, match="OUTSIDE_WEIGHT must be in"):
        build_model(cfg)


def test_mirror_channels_are_the_renderers_mirror_image():
    from relocnet.data.synthetic.actions import XOFF, mirror_pose
    from relocnet.modeling.backbone.pose import mirror_pose_channels

    def channels(p):  # the pose vector, then a horizontal offset (like XOFF, it changes sign)
        return torch.from_numpy(np.append(pose_vector(p), p[XOFF])).float().view(1, -1, 1, 1)

    p = np.random.default_rng(0).uniform(-1.5, 1.5, size=XOFF + 1)
    assert torch.allclose(mirror_pose_channels(channels(p)), channels(mirror_pose(p)), atol=1e-6)
    assert not torch.allclose(mirror_pose_channels(channels(p)), channels(p), atol=1e-2)


def test_mirror_test_makes_the_pose_head_mirror_equivariant():
    from relocnet.modeling.backbone.efficientnet import EfficientNetLiteBackbone
    from relocnet.modeling.backbone.pose import (PoseMapBackbone, mirror_head_outputs,
                                                 pose_input_channels)

    torch.manual_seed(0)
    trunk = EfficientNetLiteBackbone(weights="model_zoo:efficientnet_lite0", mirror_average=False)
    head = PoseHead(pose_input_channels(trunk), 16).eval()
    plain = PoseMapBackbone(trunk=trunk, head=head)
    tested = PoseMapBackbone(trunk=trunk, head=head, mirror_test=True)
    x = torch.rand(2, 3, 64, 80) * 2 - 1
    with torch.no_grad():
        a, b = plain.head_outputs(x), plain.head_outputs(x.flip(-1))
        assert (b - mirror_head_outputs(a)).abs().max() > 1e-2  # the head alone is not
        a, b = tested.head_outputs(x), tested.head_outputs(x.flip(-1))
        assert torch.allclose(b, mirror_head_outputs(a), atol=1e-4)
        # a width that is not a multiple of 16: padded so that the grids fall on each other
        assert tested.head_outputs(x[..., :72]).shape == plain.head_outputs(x[..., :72]).shape


def test_training_frames_get_their_mirror_images():
    from relocnet.engine.pose_training import PoseSamples, with_mirror_images

    plans = plan_clips(0, ["walk_right"], 1, 2)
    s = render_pose_samples(plans, (64, 80), 2, seed=0)
    m, n = with_mirror_images(s), len(s.frames)
    assert len(m.frames) == 2 * n and np.array_equal(m.frames[:n], s.frames)
    assert np.array_equal(m.frames[n:], s.frames[:, :, ::-1])
    assert np.array_equal(m.actor[n:], s.actor[:, :, ::-1])
    assert not np.allclose(m.pose[n:], s.pose[..., ::-1])  # limbs and offsets mirrored too
    back = with_mirror_images(PoseSamples(m.frames[n:], m.actor[n:], m.pose[n:]))
    assert np.allclose(back.pose[n:], s.pose, atol=1e-6)  # twice: the samples again
    with pytest.raises(ValueError, match="multiple of 16"):
        with_mirror_images(render_pose_samples(plans, (64, 72), 1, seed=0))


def test_sequence_head_tells_order_twins_apart_and_keyframe_head_ignores_motion():
    """punch_llr and punch_rrl are the same punches in another order: the frame kernel
    (any query frame) scores both alike, the sequence head (the query's frames in order)
    prefers the query's class. The keyframe head sees one pose per second: no speed."""
    from relocnet.engine.setup import setup_cfg
    from relocnet.evaluation.pose_oracle import true_pose_track
    from relocnet.modeling.heads.pose_kernel_head import (PoseKernelHead, PoseKeyframeHead,
                                                          PoseSequenceHead)

    llr, rrl = (true_pose_track(p, 8) for p in plan_clips(1, ["punch_llr", "punch_rrl"], 1, 4))
    query = true_pose_track(plan_clips(11, ["punch_llr"], 1, 4)[0], 8)
    with torch.no_grad():
        frame = [float(PoseKernelHead(frames=8).scores(r, query).amax(1).mean()) for r in (llr, rrl)]
        seq = [float(PoseSequenceHead(frames=8).scores(r, query).mean()) for r in (llr, rrl)]
    assert abs(frame[0] - frame[1]) < 0.03
    assert seq[0] > 0.9 and seq[0] > seq[1] + 0.08
    side = true_pose_track(plan_clips(0, ["side_step_left"], 1, 3)[0], 8)
    flipped = side.clone().view(side.shape[0], 8, -1, 1, 1)
    flipped[:, :, -1] *= -1.0  # the pelvis moves the other way
    flipped = flipped.view_as(side)
    with torch.no_grad():
        for head, moved in ((PoseKernelHead(frames=8), True), (PoseKeyframeHead(frames=8), False)):
            same, other = head.scores(side, side).diagonal(), head.scores(side, flipped).diagonal()
            assert torch.allclose(same, other, atol=1e-4) != moved
    config = CONFIG.replace("relocnet_pose_cpu", "relocnet_posetrack_cpu")
    cfg = setup_cfg(argparse.Namespace(config_file=config, opts=[
        "MODEL.RELOC.QUERY_CROPS", "[[0.0, 0.0, 0.5, 0.5]]"]), log=False)
    with pytest.raises(ValueError, match="in order"):
        PoseSequenceHead(cfg, in_channels=8 * 21)


def test_pose_track_spatio_temporal_model_streams_the_cached_detections():
    """RelocPoseTrack (`relocnet relocalize` with query boxes and the pose-track ST config): one
    detection per reference second, the same as the cached path (predict_cached_boxes) for a
    full-frame query; with a query box the query is that region."""
    from relocnet.data.pairs import resolve_video
    from relocnet.engine.cached_training import predict_cached_boxes
    from relocnet.engine.inference import load_model, prepare_query, relocalize
    from relocnet.engine.setup import setup_cfg
    from relocnet.evaluation.predictions import entries_from_output

    cfg, model, (pair,), data = _cached_spatio_temporal_pairs("relocnet_posetrack_cpu_st", 1)
    v = cfg.INPUT.VIDEO
    pair_file = os.path.join(DATA, "pairs", "spatio_temporal_test.json")
    config = CONFIG.replace("relocnet_pose_cpu_temporal", "relocnet_posetrack_cpu_st")
    cached = predict_cached_boxes(model, data, {pair["pair_id"]: (160, 120)})[pair["pair_id"]]
    qpath = resolve_video(pair_file, pair["query"]["video"])
    ref = resolve_video(pair_file, pair["reference"]["video"])
    size = (v.HEIGHT, v.WIDTH)
    query, _, _ = prepare_query(qpath, fps=v.FPS, size=size, query_seconds=v.QUERY_SECONDS)
    out = relocalize(model, query, ref, fps=v.FPS, size=size).outputs
    streamed = entries_from_output(out, "spatio_temporal")
    assert [d["second"] for d in streamed] == [d["second"] for d in cached] == list(range(7))
    for s, c in zip(streamed, cached):
        assert s["box"] == pytest.approx(c["box"], abs=1e-3)
        assert s["score"] == pytest.approx(c["score"], abs=1e-5)
    boxes = {int(k): [b] for k, b in pair["query"]["boxes"].items()}
    query, _, _ = prepare_query(qpath, fps=v.FPS, size=size, query_seconds=v.QUERY_SECONDS,
                                boxes=boxes)
    boxed = relocalize(model, query, ref, fps=v.FPS, size=size).outputs
    assert len(boxed["instances"]) == 7 and not torch.allclose(boxed["second_scores"],
                                                                 out["second_scores"])
    b = boxed["instances"].pred_boxes.tensor
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 160).all() and (b[:, 3] <= 120).all()
    bad = setup_cfg(argparse.Namespace(config_file=config, opts=["MODEL.RELOC.HEAD.NAME",
                                                                 "ConcatHead"]), log=False)
    with pytest.raises(ValueError, match="locates the matching actor"):
        load_model(bad, "")


def test_predict_pairs_gives_what_relocalize_gives_for_each_pair_with_its_query_boxes(tmp_path):
    """tools/predict_pairs.py: every spatio-temporal pair through the path of ``relocnet
    relocalize --query-boxes``; the prediction file holds the command's detections and scores as
    tools/evaluate.py scores it. A missing pair file: one line, nothing written."""

    from relocnet.cli import main as cli

    here = os.path.dirname(__file__)
    st_config = os.path.join(here, "..", "configs", "synthreloc", "relocnet_posetrack_cpu_st.yaml")
    weights = os.path.join(here, "..", "relocnet", "model_zoo", "weights",
                           "relocnet_posetrack_cpu_temporal.pth")
    pairs = os.path.join(DATA, "pairs", "spatio_temporal_test.json")
    out = tmp_path / "run"
    tool = [sys.executable, os.path.join(here, "..", "tools", "predict_pairs.py"),
            "--config-file", st_config, "--weights", weights, "--output", str(out)]
    proc = subprocess.run(tool + ["--pairs", pairs], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preds = json.loads((out / "predictions_synthreloc_tiny_spatio_temporal_test.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())[pairs]
    evaluated = subprocess.run(
        [sys.executable, os.path.join(here, "..", "tools", "evaluate.py"), "--pairs", pairs,
         "--predictions", str(out / "predictions_synthreloc_tiny_spatio_temporal_test.json")],
        capture_output=True, text=True, timeout=300)
    assert json.loads(evaluated.stdout.strip().splitlines()[-1])["AP@0.5"] == pytest.approx(
        metrics["AP@0.5"])
    first = json.load(open(pairs))["pairs"][0]
    (tmp_path / "boxes.json").write_text(json.dumps(first["query"]["boxes"]))
    assert cli(["relocalize", "--query", os.path.join(DATA, "pairs", first["query"]["video"]),
                "--query-start", str(first["query"]["start"]),
                "--query-end", str(first["query"]["end"]),
                "--query-boxes", str(tmp_path / "boxes.json"),
                "--reference", os.path.join(DATA, "pairs", first["reference"]["video"]),
                "--config-file", st_config, "--weights", weights, "--no-cache", "--no-progress",
                "--output", str(tmp_path / "one")]) == 0
    detections = json.loads((tmp_path / "one" / "results.json").read_text())["detections"]
    mine = preds["results"][first["pair_id"]]
    assert len(mine) == len(detections) > 0
    for a, b in zip(mine, detections):
        assert a["second"] == b["second"] and a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert a["box"] == pytest.approx(b["box"], abs=0.01)
    missing = subprocess.run(tool[:-2] + ["--output", str(tmp_path / "none"), "--pairs",
                                          str(tmp_path / "missing.json")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "missing.json" in missing.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "none").exists()
    unweighted = subprocess.run(tool[:4] + ["--output", str(tmp_path / "none"), "--pairs", pairs],
                                capture_output=True, text=True, timeout=300)
    assert unweighted.returncode == 1 and "no weights" in unweighted.stderr
    # a reference that is not a video: one line naming the pair, no prediction file
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 100)
    data = json.load(open(pairs))
    data["pairs"] = [dict(data["pairs"][0], reference=dict(data["pairs"][0]["reference"],
                                                           video=str(tmp_path / "broken.mp4")))]
    data["pairs"][0]["query"]["video"] = os.path.join(DATA, "pairs", first["query"]["video"])
    (tmp_path / "bad.json").write_text(json.dumps(data))
    broken = subprocess.run(tool[:-2] + ["--output", str(tmp_path / "bad"), "--pairs",
                                         str(tmp_path / "bad.json")],
                            capture_output=True, text=True, timeout=300)
    line = broken.stderr.strip().splitlines()[-1]
    assert broken.returncode == 1 and line.startswith("predict_pairs: "), broken.stderr[-1500:]
    assert "bad.json" in line and first["pair_id"] in line and "broken.mp4" in line
    assert not list((tmp_path / "bad").glob("predictions_*.json"))
