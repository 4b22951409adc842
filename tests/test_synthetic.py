"""SynthReloc: determinism, real decodable videos, valid pair files, disjoint splits, motion-only
twins in the action library, and boxes that enclose the rendered actor."""
import glob
import json
import os

import av
import numpy as np
import pytest

from relocnet.data.pairs import load_pairs, resolve_video
from relocnet.data.synthetic import actions as A
import relocnet.data.synthetic.generate as gen
from relocnet.data.synthetic.actors import ActorSprite, Appearance
from relocnet.data.synthetic.plan import PRESETS, SPLITS, plan_split
from relocnet.data.synthetic.scene import FPS, FRAME_H, FRAME_W, SceneRenderer, keyframe_index
from relocnet.data.video_writer import write_video

TASKS = ("temporal", "spatio_temporal")


def _quiet(msg):
    pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth") / "tiny")
    gen.generate(out, seed=0, preset="tiny", workers=2, log=_quiet)
    return out


def _annotations(d):
    files = sorted(glob.glob(os.path.join(d, "pairs", "*.json"))) + [
        os.path.join(d, "classes.json"), os.path.join(d, "manifest.json")]
    return {os.path.relpath(f, d): open(f, "rb").read() for f in files}


def test_deterministic_for_a_seed(tiny, tmp_path):
    # same seed, other worker count, annotations only: byte-identical JSON
    again = str(tmp_path / "again")
    gen.generate(again, seed=0, preset="tiny", workers=1, write_videos=False, log=_quiet)
    a, b = _annotations(tiny), _annotations(again)
    assert len(a) == 8 and a == b
    other = str(tmp_path / "other")
    gen.generate(other, seed=1, preset="tiny", workers=1, write_videos=False, log=_quiet)
    c = _annotations(other)
    assert c["pairs/spatio_temporal_train.json"] != a["pairs/spatio_temporal_train.json"]


def test_one_split_is_the_same_as_in_the_full_dataset(tiny, tmp_path):
    # --splits test: more test seeds without rendering their training splits
    only = str(tmp_path / "test_only")
    manifest = gen.generate(only, seed=0, preset="tiny", workers=1, log=_quiet, splits=["test"])
    assert list(manifest["splits"]) == ["test"] and os.listdir(os.path.join(only, "videos")) == ["test"]
    full = _annotations(tiny)
    for task in TASKS:
        rel = f"pairs/{task}_test.json"
        assert open(os.path.join(only, rel), "rb").read() == full[rel]
    assert sorted(os.listdir(os.path.join(only, "pairs"))) == sorted(f"{t}_test.json" for t in TASKS)
    for bad in (["tset"], []):
        with pytest.raises(ValueError, match="split"):
            gen.generate(str(tmp_path / "bad"), seed=0, preset="tiny", log=_quiet, splits=bad)
    assert not os.path.exists(tmp_path / "bad")


def test_no_half_written_dataset(tiny, tmp_path, monkeypatch):
    with pytest.raises(FileExistsError):
        gen.generate(tiny, seed=0, preset="tiny", workers=1, write_videos=False, log=_quiet)

    def boom(job):
        raise RuntimeError("render failed")
    monkeypatch.setattr(gen, "render_one", boom)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="render failed"):
        gen.generate(str(out), seed=0, preset="tiny", workers=1, log=_quiet)
    assert os.listdir(tmp_path) == []  # neither the dataset nor its temporary directory


def test_videos_decode_to_expected_frames(tiny):
    manifest = json.load(open(os.path.join(tiny, "manifest.json")))
    assert (manifest["fps"], manifest["width"], manifest["height"]) == (24, 160, 120)
    videos = sorted(glob.glob(os.path.join(tiny, "videos", "*", "*.mp4")))
    assert len(videos) == sum(s["videos"] for s in manifest["splits"].values())
    lengths = {}
    for split in SPLITS:
        for p in load_pairs(os.path.join(tiny, "pairs", f"temporal_{split}.json"))["pairs"]:
            for part in ("query", "reference"):
                lengths[os.path.normpath(os.path.join(tiny, "pairs", p[part]["video"]))] = p[part]["end"]
    for v in videos[:6]:
        with av.open(v) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264" and s.average_rate == FPS
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        assert frames[0].shape == (FRAME_H, FRAME_W, 3)
        if os.path.normpath(v) in lengths:
            assert len(frames) == int(lengths[os.path.normpath(v)]) * FPS
        assert np.std(frames[len(frames) // 2]) > 5  # a real picture, not a blank frame


def test_pair_files_load_for_both_tasks(tiny):
    for split in SPLITS:
        t = load_pairs(os.path.join(tiny, "pairs", f"temporal_{split}.json"))
        st = load_pairs(os.path.join(tiny, "pairs", f"spatio_temporal_{split}.json"))
        assert (t["task"], st["task"]) == TASKS and len(t["pairs"]) == len(st["pairs"]) > 0
        for pt, p in zip(t["pairs"], st["pairs"]):
            assert pt["pair_id"] == p["pair_id"] and "boxes" not in pt and "boxes" not in pt["query"]
            for part in ("query", "reference"):
                path = resolve_video(os.path.join(tiny, "pairs", "x.json"), p[part]["video"])
                assert p[part]["video"].startswith("../videos/") and os.path.isfile(path)
            q = p["query"]
            assert 2 <= q["end"] - q["start"] <= 5 and sorted(q["boxes"]) == list(range(int(q["end"])))
            assert 1 <= len(p["segments"]) <= 2
            secs = [s for a, b in p["segments"] for s in range(int(a), int(b))]
            assert all(float(x).is_integer() for seg in p["segments"] for x in seg)
            assert sorted(p["boxes"]) == secs  # a box list for every ground-truth second
            for boxes in list(p["boxes"].values()) + [[b] for b in q["boxes"].values()]:
                for x1, y1, x2, y2 in boxes:
                    assert 0 <= x1 < x2 <= FRAME_W and 0 <= y1 < y2 <= FRAME_H
                    assert x2 - x1 >= 3 and y2 - y1 >= 8


def test_splits_have_disjoint_classes_and_twins(tiny):
    table = json.load(open(os.path.join(tiny, "classes.json")))["classes"]
    assert len(table) >= 16
    by_split = {s: {c["name"] for c in table if c["split"] == s} for s in SPLITS}
    assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"]
                or by_split["val"] & by_split["test"])
    for c in table:
        if c["twin"]:  # twins are in the same split and point at each other
            twin = next(d for d in table if d["name"] == c["twin"])
            assert twin["split"] == c["split"] and twin["twin"] == c["name"] and c["motion_only_twin"]
    for s in ("val", "test"):
        assert sum(1 for c in table if c["split"] == s and c["twin"]) >= 2
    for split in SPLITS:
        labels = {p["label"] for p in load_pairs(
            os.path.join(tiny, "pairs", f"temporal_{split}.json"))["pairs"]}
        assert labels <= by_split[split]
    # train videos never show a val/test action; val/test videos never show each other's
    allowed = {"train": by_split["train"], "val": by_split["val"] | by_split["train"],
               "test": by_split["test"] | by_split["train"]}
    for split in SPLITS:
        videos, _ = plan_split(0, split, PRESETS["tiny"])
        shown = {s.name for v in videos for a in v.actors for s in a.segments} - {A.IDLE}
        assert shown <= allowed[split]


def _trajectory(name, ts, inst):
    P = np.stack([A.pose_at(name, t, inst) for t in ts])
    vel = np.gradient(P[:, A.XOFF], ts)
    return P, vel


def test_twins_share_poses_but_not_motion():
    inst = A.Instance()
    app = Appearance.sample(np.random.default_rng(0), 60.0)
    sprite = ActorSprite(app)
    pairs = {tuple(sorted((a.name, a.twin))) for a in A.classes() if a.twin}
    assert len(pairs) >= 5
    grid = np.arange(0, 3.0, 1 / 160)
    for a, b in sorted(pairs):
        Pa, va = _trajectory(a, grid, inst)
        Pb, vb = _trajectory(b, grid, inst)
        d = np.abs(np.angle(np.exp(1j * (Pa[:, None, A.JOINTS] - Pb[None, :, A.JOINTS])))).max(-1)
        d = np.maximum(d, np.abs(Pa[:, None, A.LIFT] - Pb[None, :, A.LIFT]))
        # every pose of one twin is (nearly exactly) a pose of the other: same single frames
        assert d.min(1).max() < 0.05 and d.min(0).max() < 0.05, (a, b)
        i, j = np.unravel_index(np.argmin(d[::10]), d[::10].shape)
        ca, cb = (np.zeros((100, 100, 3), np.uint8) for _ in range(2))
        ma = sprite.draw(ca, Pa[i * 10], 50.0, 90.0)[2]
        mb = sprite.draw(cb, Pb[j], 50.0, 90.0)[2]
        diff = np.any(ca != cb, axis=-1).sum()
        assert diff <= 0.02 * max(ma.sum(), mb.sum()), (a, b, diff)
        # ... but no time shift makes the motions agree over a 2-second window
        fine = np.arange(0, 5.0, 1 / 96)
        Fa, fva = _trajectory(a, fine, inst)
        Fb, fvb = _trajectory(b, fine, inst)
        win = np.arange(48, 48 + 192, 4)  # 2 s of a, sampled at 24 fps
        best = np.inf
        for shift in range(-48, 240):  # b shifted by -0.5 .. 2.5 s
            dj = np.abs(np.angle(np.exp(1j * (Fa[win, A.JOINTS] - Fb[win + shift, A.JOINTS])))).max()
            best = min(best, max(dj, np.abs(fva[win] - fvb[win + shift]).max()))
        assert best > 0.25, (a, b, best)


def test_instances_vary():
    rng = np.random.default_rng(0)
    i1, i2 = A.Instance.sample(rng), A.Instance.sample(rng)
    assert i1 != i2 and 0.9 <= i1.speed <= 1.1
    p1 = A.pose_at("wave_fast", 0.3, i1)
    assert A.pose_distance(p1, A.pose_at("wave_fast", 0.3, i2)) > 1e-3


def test_boxes_enclose_the_rendered_actor():
    videos, _ = plan_split(5, "val", PRESETS["tiny"])
    checked = 0
    for plan in videos[:3]:
        r = SceneRenderer(plan)
        for sec in range(0, plan.length, 2):
            i = keyframe_index(sec)
            _, measures = r.render(i, measure=True)
            for k, (box, vis, action) in enumerate(measures):
                alone = r.render_actor_alone(k, i)
                ys, xs = np.nonzero(alone.max(-1) > 0)
                if box is None:
                    assert len(xs) == 0
                    continue
                x1, y1, x2, y2 = box
                nz = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                # the box is the >= 50 %-coverage extent; faint edge pixels add at most 1 px
                assert nz[0] <= x1 <= nz[0] + 1 and nz[1] <= y1 <= nz[1] + 1
                assert nz[2] - 1 <= x2 <= nz[2] and nz[3] - 1 <= y2 <= nz[3]
                assert 0.0 <= vis <= 1.0 and action in A.ACTIONS
                checked += 1
    assert checked >= 10


def test_write_video_roundtrip_and_errors(tmp_path):
    frames = [np.full((24, 32, 3), 16 * k, np.uint8) for k in range(10)]
    path = str(tmp_path / "v.mp4")
    write_video(path, frames, fps=10)
    with av.open(path) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(got) == 10 and got[0].shape == (24, 32, 3)
    assert abs(int(got[5].mean()) - 80) <= 3

    def broken():
        yield frames[0]
        raise OSError("camera unplugged")
    bad = str(tmp_path / "bad.mp4")
    with pytest.raises(OSError):
        write_video(bad, broken(), fps=10)
    with pytest.raises(ValueError, match="even"):
        write_video(bad, [np.zeros((25, 32, 3), np.uint8)], fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_video(bad, [], fps=10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(bad, [np.zeros((24, 32), np.float32)], fps=10)
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]  # no partial or temporary file left
