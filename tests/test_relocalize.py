"""`relocnet relocalize`: streamed inference equals the model's own, flat memory, the feature
cache (reuse, partial entries), the output folder, and one-line errors. Tiny random-weight
models on tiny generated videos."""
import json
import os
import re
import tracemalloc

import av
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from relocnet import add_relocnet_config
from relocnet.cli import main
from relocnet.data.video import read_subclips
from relocnet.data.video_writer import write_video
from relocnet.engine.feature_cache import FeatureCache
from relocnet.engine.inference import load_model, prepare_query, relocalize

torch.set_num_threads(1)
FPS, H, W = 4, 48, 64  # model input
VW, VH = 128, 96  # video files
BOX = [20.0, 10.0, 80.0, 60.0]  # a query box in video pixels


def tiny_cfg(arch: str, head_channels: int = 16):
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/synthreloc/Base-RelocNet-CPU.yaml")
    cfg.MODEL.META_ARCHITECTURE = arch
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 8
    cfg.MODEL.RELOC.MICRO.WIDTH = 8
    cfg.MODEL.RELOC.MICRO.OUT_CHANNELS = 16
    cfg.MODEL.RELOC.MACRO.HIDDEN = 8
    cfg.MODEL.RELOC.HEAD.CHANNELS = head_channels
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16, 32]]
    cfg.INPUT.VIDEO.FPS = FPS
    cfg.INPUT.VIDEO.HEIGHT, cfg.INPUT.VIDEO.WIDTH = H, W
    cfg.INPUT.VIDEO.QUERY_SECONDS = 3
    # the paper's overlap (stride 1): a 10 s reference is 6 windows, 2 backbone batches (4 + 2),
    # and a 20 s one already reaches the steady state of the stream (full batches in the middle)
    cfg.INPUT.VIDEO.REFERENCE_SECONDS, cfg.INPUT.VIDEO.WINDOW_OVERLAP = 5, 4
    return cfg


def make_video(path, seconds: int, seed: int, fps: int = 8) -> str:
    """A moving square on a gradient (cheap to encode, not trivial to match)."""
    rng = np.random.default_rng(seed)
    bg = (np.linspace(0, 255, VW)[None, :, None] * np.array([0.3, 0.5, 0.8])).astype(np.uint8)
    colors = rng.integers(0, 256, (seconds, 3))

    def frames():
        for i in range(seconds * fps):
            f = np.broadcast_to(bg, (VH, VW, 3)).copy()
            x, y = (i * 5) % (VW - 24), int(30 + 20 * np.sin(i / 6))
            f[y:y + 24, x:x + 24] = colors[i // fps]
            yield f

    write_video(str(path), frames(), fps)
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("reloc")
    e = {"dir": d, "query": make_video(d / "q.mp4", 3, 1), "ref": make_video(d / "r.mp4", 10, 2)}
    for arch, name in (("RelocTemporal", "t"), ("RelocRCNN", "st")):
        cfg = tiny_cfg(arch)
        (d / f"{name}.yaml").write_text(cfg.dump())
        torch.manual_seed(1)
        DetectionCheckpointer(build_model(cfg), save_dir=str(d)).save(name)
        e[name] = ["--config-file", str(d / f"{name}.yaml"), "--weights", str(d / f"{name}.pth")]
    return e


def run(capsys, argv):
    rc = main(["relocalize", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("arch", ["RelocTemporal", "RelocRCNN"])
def test_streamed_equals_model_and_cache_replays_it(env, tmp_path, arch):
    cfg = tiny_cfg(arch)
    model = load_model(cfg, str(env["dir"] / ("t.pth" if arch == "RelocTemporal" else "st.pth")))
    boxes = {0: [BOX, [0.0, 0.0, 64.0, 96.0]]} if arch == "RelocRCNN" else None
    query, _, seconds = prepare_query(env["query"], fps=FPS, size=(H, W), query_seconds=3,
                                      boxes=boxes)
    assert seconds == [0, 1, 2] and query["query"].shape == (3, FPS, H, W, 3)
    ref = torch.from_numpy(read_subclips(env["ref"], FPS, (H, W)))
    pair = dict(query, pair_id="p", reference=ref, reference_seconds=torch.arange(10),
                height=VH, width=VW)
    expect = model([pair])[0]  # 6 windows: batches of 4 + 2
    cache = FeatureCache(str(tmp_path / "cache"))
    runs = [relocalize(model, query, env["ref"], fps=FPS, size=(H, W), cache=c, cfg=cfg)
            for c in (None, cache, cache)]
    assert [r.cache for r in runs] == ["off", "miss", "hit"]
    assert "reusing cached features for " + env["ref"] in runs[2].messages[-1]
    for r in runs:
        got = r.outputs
        assert torch.allclose(got["second_scores"], expect["second_scores"], atol=1e-5, rtol=0)
        assert torch.equal(got["segments"], expect["segments"])
        if arch == "RelocRCNN":
            a, b = got["instances"], expect["instances"]
            assert len(a) == len(b) > 0 and torch.equal(a.seconds, b.seconds)
            assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-4)
            assert a.image_size == (VH, VW) and a.pred_boxes.tensor[:, 2].max() <= VW


def test_memory_does_not_grow_with_reference_length(env, tmp_path):
    cfg = tiny_cfg("RelocRCNN")
    model = load_model(cfg, str(env["dir"] / "st.pth"))
    query, _, _ = prepare_query(env["query"], fps=FPS, size=(H, W), query_seconds=3,
                                boxes={0: [BOX]})
    cache = FeatureCache(str(tmp_path / "cache"))
    peaks = {}
    for seconds in (20, 80):
        path = make_video(tmp_path / f"r{seconds}.mp4", seconds, seconds, fps=FPS)
        tracemalloc.start()
        out = relocalize(model, query, path, fps=FPS, size=(H, W), cache=cache, cfg=cfg).outputs
        peaks[seconds] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert out["second_scores"].shape == (seconds,)
    # the 80 s reference's decoded frames alone would be 80 * 4 * 48 * 64 * 3 B = 2.9 MB; what
    # may grow is the output: 60 s x 10 detections x 56 B = 34 kB
    assert peaks[80] < peaks[20] + 200 * 1024, peaks


# ----------------------------------------------------------------------------- cache


def _entry(cache: FeatureCache, key="k" * 64, chunks=3):
    w = cache.writer(key, {"note": "test"})
    for i in range(chunks):
        w.append({"starts": np.array([i]), "features": np.full((2, 3), i, np.float32)})
    return w


def test_cache_entries_are_complete_or_ignored(tmp_path):
    cache = FeatureCache(str(tmp_path))
    key = "k" * 64
    w = _entry(cache, key)  # a writer killed before commit leaves only its temp file
    assert cache.lookup(key) is None and os.listdir(tmp_path) == [os.path.basename(w.tmp)]
    path = _entry(cache, key).commit()
    entry = cache.lookup(key)
    assert entry.meta == {"note": "test"}
    assert [c["features"][0, 0] for c in entry.chunks()] == [0, 1, 2]
    data = open(path, "rb").read()
    for name, damaged in [("cut", data[: len(data) * 2 // 3]), ("no footer", data[:-20]),
                          ("flipped", data[:100] + bytes([data[100] ^ 1]) + data[101:])]:
        with open(path, "wb") as f:  # e.g. a copy or a disk that lost the end
            f.write(damaged)
        assert cache.lookup(key) is None, name
        assert not os.path.exists(path) and name and cache.problems[-1].startswith("ignored")
    small = FeatureCache(str(tmp_path / "small"), max_bytes=1)
    first = _entry(small, "a" * 64).commit()
    second = _entry(small, "b" * 64).commit()  # least recently used goes, the new one stays
    assert not os.path.exists(first) and os.path.exists(second)


def test_reference_too_big_for_the_cache_is_not_cached(env, tmp_path):
    cfg = tiny_cfg("RelocTemporal")
    model = load_model(cfg, str(env["dir"] / "t.pth"))
    query, _, _ = prepare_query(env["query"], fps=FPS, size=(H, W), query_seconds=3)
    small = FeatureCache(str(tmp_path / "cache"), max_bytes=20_000)  # the entry would be ~80 kB
    got = relocalize(model, query, env["ref"], fps=FPS, size=(H, W), cache=small, cfg=cfg)
    plain = relocalize(model, query, env["ref"], fps=FPS, size=(H, W))
    assert "not caching features" in got.messages[-1] and not os.listdir(tmp_path / "cache")
    assert torch.equal(got.outputs["second_scores"], plain.outputs["second_scores"])


def test_partial_entry_is_recomputed(env, tmp_path, capsys):
    cache_dir, out = tmp_path / "cache", tmp_path / "out"
    argv = ["--query", env["query"], "--reference", env["ref"], *env["t"], "--no-progress",
            "--cache-dir", str(cache_dir), "--output", str(out)]
    assert run(capsys, argv)[0] == 0
    (entry,) = [p for p in os.listdir(cache_dir) if not p.startswith(".")]
    full = json.loads((out / "results.json").read_text())
    data = (cache_dir / entry).read_bytes()
    (cache_dir / entry).write_bytes(data[: len(data) // 2])  # as if killed mid-copy
    (cache_dir / (".tmp-" + entry)).write_bytes(data[:100])  # a killed writer's left-over
    rc, stdout, _ = run(capsys, argv)
    again = json.loads((out / "results.json").read_text())
    assert rc == 0 and again["cache"]["status"] == "miss" and "ignored" in stdout
    assert again["second_scores"] == pytest.approx(full["second_scores"], abs=1e-6)
    rc, stdout, _ = run(capsys, argv)
    assert rc == 0 and f"reusing cached features for {env['ref']}" in stdout
    assert json.loads((out / "results.json").read_text())["cache"]["status"] == "hit"


# ----------------------------------------------------------------------------- the command


def _check_report(out, mode):
    res = json.loads((out / "results.json").read_text())
    assert res["mode"] == mode and len(res["second_scores"]) == 10
    assert 1 <= len(res["segments"]) <= 2 and set(res["segments"][0]) == {"rank", "start", "end",
                                                                          "score", "probability"}
    top = res["segments"][0]["probability"]
    assert 0.0 <= top <= 1.0 and res["found"] == (top >= res["match_threshold"])
    html = (out / "report.html").read_text()
    assert ("Decision: found" if res["found"] else "Decision: not found") in html
    links = re.findall(r"(?:src|href)='([^']+)'", html)
    assert "timeline.png" in links and "results.json" in links
    assert all(not os.path.isabs(p) and (out / p).is_file() for p in links), links
    for k in res["files"]["segments"].values():
        with av.open(str(out / k)) as c:
            assert c.streams.video[0].frames > 0
    assert res["files"]["keyframes"]["1"] and not list(out.parent.glob("out.tmp-*"))
    return res


def test_temporal_command_outputs_and_progress(env, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, stderr = run(capsys, ["--query", env["query"], "--query-start", "0.5",
                                      "--query-end", "2.9", "--reference", env["ref"], *env["t"],
                                      "--top-k", "2", "--no-cache", "--output", str(out)])
    assert rc == 0 and f"report: {out}/report.html" in stdout
    assert "10/10" in stderr and "relocnet: error" not in stderr  # the progress bar
    res = _check_report(out, "temporal")
    assert res["cache"]["status"] == "off" and res["query"]["seconds"] == [1, 2]
    assert "detections" not in res and res["model"]["decoder"]["top_k"] == 2


def test_spatio_temporal_command_with_box_file(env, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"0": [BOX, [0, 0, 50, 40]], "2": [[30, 20, 90, 70], BOX]}))
    out = tmp_path / "out"
    rc, _, _ = run(capsys, ["--query", env["query"], "--query-boxes", str(boxes), "--reference",
                            env["ref"], *env["st"], "--top-k", "2", "--no-progress",
                            "--cache-dir", str(tmp_path / "c"), "--output", str(out)])
    assert rc == 0
    res = _check_report(out, "spatio_temporal")
    dets = res["detections"]
    assert dets and {d["query_object"] for d in dets} <= {0, 1}
    assert all(0 <= d["box"][0] < d["box"][2] <= VW and 0 <= d["box"][1] < d["box"][3] <= VH
               for d in dets)
    assert max(d["score"] for d in dets if d["second"] == 3) == pytest.approx(
        res["second_scores"][3], abs=1e-6)


# ----------------------------------------------------------------------------- errors


def _damaged_middle(src, dst):
    data = bytearray(open(src, "rb").read())
    at = len(data) // 2
    data[at:at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    open(dst, "wb").write(bytes(data))
    return str(dst)


def _bad_weights(env, tmp_path):
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(tiny_cfg("RelocTemporal", head_channels=32)),
                          save_dir=str(tmp_path)).save("wide")
    return str(tmp_path / "wide.pth")


def _write(path, text) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(text)
    return str(path)


def _taken_output(path) -> str:
    _write(path / "mine.txt", "not a relocnet result")
    return str(path)


def _st(e):
    return dict(zip(e["st"][::2], e["st"][1::2]))


ERRORS = {  # name: (options replacing the defaults, expected message)
    "missing query": (lambda e, p: {"--query": str(p / "nope.mp4")}, "query video .*file not found"),
    "text reference": (lambda e, p: {"--reference": _write(p / "a.mp4", "no video")},
                       "a.mp4: not a video"),
    "damaged reference": (lambda e, p: {"--reference": _damaged_middle(e["ref"], p / "d.mp4")},
                          r"d.mp4: damaged: seconds .* could not be decoded"),
    "query longer": (lambda e, p: {"--query": e["ref"], "--reference": e["query"]},
                     r"query \(10 s\) is longer than the reference"),
    "span outside": (lambda e, p: {"--query-end": "7"}, r"ends after the query video"),
    "box outside": (lambda e, p: {"--query-box": "10,10,200,50", **_st(e)},
                    r"box \[10.0, 10.0, 200.0, 50.0\] .* outside the 128x96 frame"),
    "box syntax": (lambda e, p: {"--query-box": "10,10,20", **_st(e)}, "expected four numbers"),
    "boxes json": (lambda e, p: {"--query-boxes": _write(p / "b.json", "{0: [1,2"), **_st(e)},
                   "not valid JSON"),
    "boxes shape": (lambda e, p: {"--query-boxes": _write(p / "b.json", '{"0": [1, 2, 3]}'),
                                  **_st(e)}, r"second 0: expected \[x1, y1, x2, y2\]"),
    "weights misfit": (lambda e, p: {"--weights": _bad_weights(e, p)},
                       r"do not fit the config .*in the file but .* in the model"),
    "weights not a checkpoint": (lambda e, p: {"--weights": _write(p / "w.pth", "x")},
                                 "cannot read weights"),
    "arch mismatch": (lambda e, p: {"--query-box": "10,10,50,50"},
                      "builds RelocTemporal, but query boxes were given"),
    "no weights": (lambda e, p: {"--weights": ""}, "no trained weights"),
    "output taken": (lambda e, p: {"--output": _taken_output(p / "out")},
                     "exists and is not a relocnet result"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_and_leave_no_result(env, tmp_path, capsys, case):
    make, expected = ERRORS[case]
    opts = {"--query": env["query"], "--reference": env["ref"], "--config-file": env["t"][1],
            "--weights": env["t"][3], "--output": str(tmp_path / "out"),
            "--cache-dir": str(tmp_path / "cache")}
    opts.update(make(env, tmp_path))
    rc, _, stderr = run(capsys, [x for kv in opts.items() for x in kv] + ["--no-progress"])
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("relocnet: error: "), stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out" / "results.json").exists()
    assert not list(tmp_path.glob("out.tmp-*"))
    if (tmp_path / "cache").exists():  # a failed run leaves no cache entry or temp file
        assert not os.listdir(tmp_path / "cache")
