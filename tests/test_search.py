"""`relocnet index` / `relocnet search`: incremental indexing, a killed run resumed without
duplicates, an undecodable file skipped, a 2-process (gloo) index equal to a 1-process one, and
search finding a copy in a small archive. Tiny random-weight models on tiny generated videos."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from relocnet.cli import main
from relocnet.data.video import read_subclips
from relocnet.data.video_writer import write_video
from relocnet.search import index_job
from relocnet.search.catalog import Catalog
from relocnet.search.faiss_index import choose_factory
from relocnet.search.snapshot import load_snapshot
from test_relocalize import VH, VW, make_video, tiny_cfg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    cfg = tiny_cfg("RelocTemporal")
    cfg.INPUT.VIDEO.WINDOW_OVERLAP = 2
    (d / "t.yaml").write_text(cfg.dump())
    torch.manual_seed(1)
    DetectionCheckpointer(build_model(cfg), save_dir=str(d)).save("t")
    videos = d / "archive"
    for k in range(3):
        make_video(videos / f"v{k}.mp4", 12, seed=10 + k)
    frames = read_subclips(str(videos / "v1.mp4"), 8, (VH, VW), 4, 8)  # a copy of v1 [4, 8)
    write_video(str(d / "copy.mp4"), frames.reshape(-1, VH, VW, 3), 8, crf=30)
    model = ["--config-file", str(d / "t.yaml"), "--weights", str(d / "t.pth"), "--no-progress"]
    return {"dir": d, "videos": videos, "model": model, "copy": str(d / "copy.mp4")}


def index(env, idx, videos=None, extra=()):
    return main(["index", "--videos", str(videos or env["videos"]), "--index", str(idx),
                 *extra, *env["model"]])


def rows(idx):
    c = Catalog(os.path.join(idx, "catalog.sqlite"))
    out = {os.path.basename(r.path): r for r in c.rows()}
    c.close()
    return out


def check_snapshot(idx, names):
    """The snapshot holds each named video once, with every second."""
    snap = load_snapshot(str(idx))
    assert sorted(os.path.basename(v["path"]) for v in snap.videos) == sorted(names)
    assert snap.index.ntotal == sum(v["seconds"] for v in snap.videos)
    return snap


def test_incremental_add_change_remove(env, tmp_path, capsys):
    archive = tmp_path / "a"
    shutil.copytree(env["videos"], archive)
    idx = tmp_path / "idx"
    assert index(env, idx, archive) == 0
    assert "3 videos indexed, 0 unchanged" in capsys.readouterr().out
    before = rows(idx)
    check_snapshot(idx, ["v0.mp4", "v1.mp4", "v2.mp4"])
    make_video(archive / "v3.mp4", 6, seed=20)  # added
    make_video(archive / "v0.mp4", 9, seed=21)  # changed
    os.remove(archive / "v2.mp4")  # removed
    os.utime(archive / "v1.mp4")  # touched only: same content, not recomputed
    assert index(env, idx, archive) == 0
    assert "2 videos indexed, 1 unchanged, 0 failed" in capsys.readouterr().out
    after = rows(idx)
    assert sorted(after) == ["v0.mp4", "v1.mp4", "v3.mp4"]
    assert after["v0.mp4"].seconds == 9 and after["v0.mp4"].digest != before["v0.mp4"].digest
    assert after["v1.mp4"].descriptors == before["v1.mp4"].descriptors
    check_snapshot(idx, ["v0.mp4", "v1.mp4", "v3.mp4"])
    assert not [f for f in os.listdir(idx) if f.startswith(("shard-", ".tmp"))]


def test_killed_run_resumes_without_duplicates(env, tmp_path, monkeypatch, capsys):
    idx = tmp_path / "idx"
    real = index_job.video_descriptors
    calls = []

    def dying(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while the third video is being indexed
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(index_job, "video_descriptors", dying)
    assert index(env, idx) == 130
    assert not os.path.exists(idx / "CURRENT")  # nothing searchable was published
    monkeypatch.setattr(index_job, "video_descriptors", real)
    assert index(env, idx) == 0
    assert "1 videos indexed, 2 unchanged" in capsys.readouterr().out
    check_snapshot(idx, ["v0.mp4", "v1.mp4", "v2.mp4"])


def test_undecodable_file_listed_and_skipped(env, tmp_path, capsys):
    archive = tmp_path / "a"
    shutil.copytree(env["videos"], archive)
    (archive / "broken.mp4").write_text("not a video\n")
    idx = tmp_path / "idx"
    assert index(env, idx, archive) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("skipped (cannot decode)")]
    assert len(line) == 1 and "broken.mp4" in line[0]
    assert "3 videos indexed, 0 unchanged, 1 failed" in out
    snap = check_snapshot(idx, ["v0.mp4", "v1.mp4", "v2.mp4"])
    assert [os.path.basename(e["path"]) for e in snap.meta["errors"]] == ["broken.mp4"]
    assert index(env, idx, archive) == 0  # the broken file is not retried until it changes
    assert "0 videos indexed, 4 unchanged" in capsys.readouterr().out


def test_two_process_gloo_index_equals_one_process(env, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert index(env, one) == 0
    assert index(env, two, extra=["--num-gpus", "2"]) == 0
    a, b = rows(one), rows(two)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].descriptors == b[name].descriptors and a[name].digest == b[name].digest
    out = {}
    for idx in (one, two):
        assert main(["search", "--query", env["copy"], "--index", str(idx), "--no-fine",
                     "--output", str(tmp_path / f"s_{idx.name}"), "--no-progress"]) == 0
        with open(tmp_path / f"s_{idx.name}" / "results.json") as f:
            out[idx.name] = [(h["video"], h["start"], h["end"], round(h["score"], 5))
                             for h in json.load(f)["hits"]]
    assert out["one"] == out["two"] and out["one"]


def test_search_finds_a_copy(env, tmp_path):
    idx = tmp_path / "idx"
    assert index(env, idx) == 0
    coarse, fine = tmp_path / "coarse", tmp_path / "fine"
    assert main(["search", "--query", env["copy"], "--index", str(idx), "--no-fine",
                 "--output", str(coarse)]) == 0
    with open(coarse / "results.json") as f:
        hits = json.load(f)["hits"]
    assert os.path.basename(hits[0]["video"]) == "v1.mp4" and hits[0]["found"] is None
    assert (hits[0]["start"], hits[0]["end"]) == (4, 8)
    assert main(["search", "--query", env["copy"], "--index", str(idx), "--candidates", "3",
                 "--output", str(fine)]) == 0
    with open(fine / "results.json") as f:
        res = json.load(f)
    # random weights: the fine scores mean nothing, but v1's candidate is re-localized
    assert 1 <= len(res["hits"]) <= 3
    assert [4, 8] in [h["candidate"] for h in res["hits"] if h["video"].endswith("v1.mp4")]
    html = (fine / "report.html").read_text()
    for h in res["hits"]:
        assert isinstance(h["found"], bool) and h["clip"] and os.path.isfile(fine / h["clip"])
        assert h["clip"] in html and all(os.path.isfile(fine / p) for p in h["keyframes"])


def test_index_factory_by_size():
    assert choose_factory(1000, 144)["description"] == "Center,L2norm,Flat"
    assert choose_factory(1000, 1024)["description"] == "PCAR256,L2norm,Flat"
    big = choose_factory(36_000_000, 144)
    assert big["description"].startswith("PCAR128,L2norm,IVF") and big["nprobe"] > 0


def test_real_archive_ground_truth_lists_every_copy(env, tmp_path):
    from relocnet.search.real_archive import build_real_archive

    videos, gt = build_real_archive(str(tmp_path), [[str(env["videos"] / "v0.mp4")],
                                                    [str(env["videos"] / "v2.mp4")]],
                                    hours=40 / 3600, queries=3, video_seconds=20)
    assert sorted(os.listdir(videos)) == ["archive_000.mp4", "archive_001.mp4"]
    with open(gt) as f:
        queries = json.load(f)["queries"]
    for q in queries:
        assert os.path.isfile(q["query"]) and q["video"].startswith(videos)
        (s, e), = q["segments"]
        assert 0 <= s < e <= 20 and 3 <= e - s <= 6
        for place in q["places"]:  # other copies of the same source footage
            assert all(0 <= a < b <= 20 for a, b in place["segments"])


def test_errors_are_one_line(env, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert main(["search", "--query", env["copy"], "--index", str(idx), "--output",
                 str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no index there (run `relocnet index` first)" in err
    assert index(env, idx, env["videos"] / "v0.mp4") == 2  # neither a folder nor a list
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "v0.mp4: a video; give a directory or a list file" in err
    archive = tmp_path / "a"
    archive.mkdir()
    shutil.copy(env["videos"] / "v0.mp4", archive)
    assert index(env, idx, archive) == 0
    other = ["--config-file", env["model"][1], "--weights", "", "--allow-random-weights"]
    for argv in (["index", "--videos", str(archive), "--index", str(idx), "--no-progress"],
                 ["search", "--query", env["copy"], "--index", str(idx), "--output",
                  str(tmp_path / "o")]):
        capsys.readouterr()
        assert main(argv + other) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another" in err, err
    assert not os.path.exists(tmp_path / "o")
