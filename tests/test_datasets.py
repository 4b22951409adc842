"""Pair files of both public benchmarks (real ActivityNet-Search split files, AVA rows written
here with the real val_test.json) and their detectron2 registration."""
import importlib.util
import json
import os
import re
from collections import Counter

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from relocnet.data import activitynet_search as anet
from relocnet.data import ava_search as ava
from relocnet.data.datasets import SPLITS, register_all, register_reloc_pairs
from relocnet.data.pairs import load_pairs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "..", "shared", "benchmarks")
ANET = os.path.join(BENCH, "activitynet_search")
VAL_TEST = os.path.join(BENCH, "ava_search", "val_test.json")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "datasets", name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------- ActivityNet-Search
@pytest.fixture(scope="module")
def anet_entries():
    return {s: anet.load_split(os.path.join(ANET, f"{s}.json")) for s in anet.SPLITS}


def test_activitynet_split_files_counts_and_classes(anet_entries):
    counts = {s: len(e) for s, e in anet_entries.items()}
    assert counts == {"train": 7593, "val": 829, "test": 978}
    labels = {s: {x.label for x in e} for s, e in anet_entries.items()}
    assert {s: len(v) for s, v in labels.items()} == {"train": 160, "val": 20, "test": 20}
    assert not (labels["train"] & labels["val"] or labels["train"] & labels["test"]
                or labels["val"] & labels["test"])
    classes = anet.load_class_split(os.path.join(ANET, "perm.npy"))
    assert {s: len(c) for s, c in classes.items()} == {"train": 160, "val": 20, "test": 20}
    assert sorted(np.concatenate(list(classes.values())).tolist()) == list(range(200))
    lengths = json.load(open(os.path.join(ANET, "length.json")))
    for e in anet_entries["test"]:  # windows lie inside the video's features
        assert e.location[1] <= lengths[e.video_id]["n_feat"]


def test_activitynet_reference_choice_follows_upstream_rule(anet_entries):
    for split in ("val", "test"):
        entries = anet_entries[split]
        refs = anet.choose_references(entries, seed=6)
        assert refs == anet.choose_references(entries, seed=6)
        assert refs != anet.choose_references(entries, seed=7)
        for e, j in zip(entries, refs):
            r = entries[j]
            assert r.label == e.label and r.window_steps >= e.query_length
            q0, q1 = e.query_steps
            assert e.location[0] <= q0 < q1 <= e.location[1]
        assert any(i == j for i, j in enumerate(refs))  # own entry is not excluded
    # a label with one long and one short entry: the short one can never be a reference
    E = anet.Entry
    toy = [E(0, "a", 1, (0, 10), (0, 8)), E(1, "b", 1, (0, 3), (0, 2)), E(2, "c", 1, (5, 20), (1, 9))]
    for seed in range(20):
        assert anet.choose_references(toy, seed)[0] in (0, 2)


def test_prepare_activitynet_writes_once(tmp_path, anet_entries):
    out = str(tmp_path / "activitynet_search")
    s = anet.prepare_activitynet_search(ANET, out)
    assert {k: (v["pairs"], v["classes"], v["status"]) for k, v in s.items()} == {
        "train": (7593, 160, "written"), "val": (829, 20, "written"), "test": (978, 20, "written")}
    test = load_pairs(os.path.join(out, "pairs", "test.json"))
    assert test["task"] == "temporal" and test["seed"] == 6 and len(test["pairs"]) == 978
    entries = anet_entries["test"]
    for p in test["pairs"]:
        e, r = entries[p["source"]["query_entry"]], entries[p["source"]["reference_entry"]]
        assert p["label"] == str(e.label) == str(r.label)
        assert p["query"]["start"] == pytest.approx(e.query_steps[0] * 16 / 30, abs=1e-6)
        assert p["query"]["end"] == pytest.approx(e.query_steps[1] * 16 / 30, abs=1e-6)
        assert p["reference"]["end"] - p["reference"]["start"] >= \
            p["query"]["end"] - p["query"]["start"] - 1e-5
        assert p["query"]["video"] == f"../videos/v_{e.video_id}.mp4"
    assert all(v == {"fps": 30.0, "fps_source": "default"} for v in test["videos"].values())
    # written once: same inputs -> unchanged; another seed -> refused; --force -> overwritten
    again = anet.prepare_activitynet_search(ANET, out, splits=("val", "test"))
    assert {v["status"] for v in again.values()} == {"unchanged"}
    before = open(os.path.join(out, "pairs", "val.json")).read()
    with pytest.raises(FileExistsError, match="--force"):
        anet.prepare_activitynet_search(ANET, out, seed=7, splits=("val", "test"))
    assert open(os.path.join(out, "pairs", "val.json")).read() == before
    forced = anet.prepare_activitynet_search(ANET, out, seed=7, splits=("val",), force=True)
    assert forced["val"]["status"] == "overwritten"
    assert open(os.path.join(out, "pairs", "val.json")).read() != before


def test_activitynet_fps_from_present_video(tmp_path, anet_entries):
    from relocnet.data.video_writer import write_video

    vid = anet_entries["val"][0].video_id
    videos = tmp_path / "anet" / "videos"
    write_video(str(videos / f"v_{vid}.mp4"), [np.full((32, 32, 3), 90, np.uint8)] * 10, fps=10)
    s = anet.prepare_activitynet_search(ANET, str(tmp_path / "anet"), splits=("val",),
                                        default_fps=25.0)
    assert s["val"]["fps_probed"] == 1
    data = load_pairs(s["val"]["path"])
    assert data["videos"][vid] == {"fps": 10.0, "fps_source": "probe"}
    other = next(v for v in data["videos"] if v != vid)
    assert data["videos"][other] == {"fps": 25.0, "fps_source": "default"}
    p = data["pairs"][0]
    e = anet_entries["val"][0]
    assert p["query"]["start"] == pytest.approx(e.query_steps[0] * 16 / 10)
    assert p["query"]["video"] == f"../videos/v_{vid}.mp4"


def test_activitynet_cli_bad_input(tmp_path, capsys):
    bad = tmp_path / "bench"
    bad.mkdir()
    np.save(bad / "perm.npy", np.load(os.path.join(ANET, "perm.npy")))
    (bad / "val.json").write_text(json.dumps([{"id": "x", "label": 3, "location": [5, 9],
                                               "groundtruth": [2, 7]}]))
    rc = _script("prepare_activitynet_search").main(
        ["--benchmark-dir", str(bad), "--output", str(tmp_path / "o"), "--splits", "val"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "val.json: entry 0: groundtruth [2, 7]" in err
    assert not (tmp_path / "o" / "pairs" / "val.json").exists()


# ---------------------------------------------------------------------------- AVAv2.1-Search
def _ava_rows():
    """Rows (video, second, box, actions, person): val rows carry real val/test labels."""
    test_labels, val_labels = json.load(open(VAL_TEST))
    v1, t1 = val_labels[7], test_labels[0]  # [10] and [4]
    multi = next(lab for lab in test_labels if len(lab) == 3)
    A, B = (0.1, 0.2, 0.5, 0.9), (0.6, 0.1, 0.9, 0.8)
    val = [("vidA", t, A, v1, 1) for t in (902, 903, 904, 906, 907)]
    val += [("vidA", 905, A, [12], 1)]
    val += [("vidA", t, B, v1, 2) for t in (903, 904, 905)]
    val += [("vidB", t, B, t1, 3) for t in range(1000, 1012)]
    val += [("vidB", t, A, multi, 5) for t in (1100, 1101)]
    train = [("vidT", t, A, [12], 1) for t in range(902, 907)]
    train += [("vidT", 904, B, v1, 2)]  # second 904 carries a val label: removed from training
    train += [(f"tr{i}", 950 + i, B, [12], 7) for i in range(8)]
    return train, val, v1, t1, multi


def _write_csv(path, rows):
    with open(path, "w") as f:
        for video, t, (x1, y1, x2, y2), actions, person in rows:
            for a in actions:
                f.write(f"{video},{t:04d},{x1},{y1},{x2},{y2},{a},{person}\n")


@pytest.fixture()
def ava_csvs(tmp_path):
    train, val, *labels = _ava_rows()
    _write_csv(tmp_path / "ava_train_v2.1.csv", train)
    _write_csv(tmp_path / "ava_val_v2.1.csv", val)
    return str(tmp_path), labels


def test_ava_val_test_file():
    test_labels, val_labels = ava.load_val_test(VAL_TEST)
    assert len(test_labels) == len(val_labels) == 27
    assert not set(test_labels) & set(val_labels)
    assert all(list(lab) == sorted(lab) for lab in test_labels + val_labels)


def test_ava_pairs_follow_upstream_rules(ava_csvs, tmp_path):
    csv_dir, (v1, t1, multi) = ava_csvs
    out = str(tmp_path / "ava_search")
    s = ava.prepare_ava_search(csv_dir, VAL_TEST, out, default_size=(320, 240))
    assert {k: v["pairs"] for k, v in s.items()} == {"train": 10, "val": 3, "test": 2}
    val = {p["pair_id"]: p for p in load_pairs(s["val"]["path"])["pairs"]}
    assert set(val) == {"vidA_1_902", "vidA_1_906", "vidA_2_903"}  # runs broken by label 12
    q = val["vidA_1_902"]
    assert q["label"] == "10" and (q["query"]["start"], q["query"]["end"]) == (902, 905)
    assert q["query"]["boxes"] == {t: [32.0, 48.0, 160.0, 216.0] for t in (902, 903, 904)}
    for p in val.values():  # every reference is a padded run of label 10, clamped at 900
        r0, r1 = p["source"]["reference_run"]
        n = r1 - r0
        assert p["reference"]["start"] == max(r0 - n, 900)
        assert p["reference"]["end"] == min(r1 + n, 1800)
        # ground truth = every person with the label at each reference second
        assert len(p["boxes"].get(904, [])) == (2 if p["reference"]["start"] <= 904 else 0)
    test = load_pairs(s["test"]["path"])["pairs"]
    assert sorted(p["label"] for p in test) == sorted([str(t1[0]), "+".join(map(str, multi))])
    long = next(p for p in test if p["label"] == str(t1[0]))
    assert (long["reference"]["start"], long["reference"]["end"]) == (1000, 1012)  # 12 s: no pad
    assert long["segments"] == [[1000, 1012]]
    assert long["boxes"][1005] == [[192.0, 24.0, 288.0, 192.0]]
    train = load_pairs(s["train"]["path"])
    assert {p["label"] for p in train["pairs"]} == {"12"}
    for p in train["pairs"]:
        if p["query"]["video"].endswith("vidT.mkv"):
            assert 904 not in p["query"]["boxes"] and 904 not in p["boxes"]
            assert not p["reference"]["start"] <= 904 < p["reference"]["end"]
    assert train["videos"]["vidT"] == {"width": 320, "height": 240, "size_source": "default"}
    # determinism, and the seed matters
    again = ava.prepare_ava_search(csv_dir, VAL_TEST, out, default_size=(320, 240))
    assert {v["status"] for v in again.values()} == {"unchanged"}
    with pytest.raises(FileExistsError):
        ava.prepare_ava_search(csv_dir, VAL_TEST, out, default_size=(320, 240), seed=3)


def test_ava_sizes_from_video_and_time_offset(ava_csvs, tmp_path):
    from relocnet.data.video_writer import write_video

    csv_dir, _ = ava_csvs
    out = tmp_path / "ava"
    write_video(str(out / "videos" / "vidA.mp4"), [np.zeros((48, 64, 3), np.uint8)] * 2, fps=2)
    s = ava.prepare_ava_search(csv_dir, VAL_TEST, str(out), splits=("val",),
                               default_size=(320, 240), time_offset=900)
    data = load_pairs(s["val"]["path"])
    assert data["videos"]["vidA"] == {"width": 64, "height": 48, "size_source": "probe"}
    p = next(p for p in data["pairs"] if p["pair_id"] == "vidA_1_902")
    assert p["query"]["video"] == "../videos/vidA.mp4"
    assert (p["query"]["start"], p["query"]["end"]) == (2, 5)
    assert p["query"]["boxes"][2] == [6.4, 9.6, 32.0, 43.2]


@pytest.mark.parametrize("line, message", [
    ("vidA,0902,0.1,0.2,0.5,0.9,10", "expected 8 columns"),
    ("vidA,09x2,0.1,0.2,0.5,0.9,10,1", "timestamp, action_id and person_id must be"),
    ("vidA,0902,0.5,0.2,0.1,0.9,10,1", "0 <= x1 < x2 <= 1"),
    ("vidA,0902,0.1,0.2,0.5,0.8,11,1", "has another box on line 1"),
])
def test_ava_malformed_rows(tmp_path, line, message):
    path = tmp_path / "ava_val_v2.1.csv"
    path.write_text("vidA,0902,0.1,0.2,0.5,0.9,10,1\n\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"ava_val_v2\.1\.csv:3: .*{re.escape(message)}"):
        ava.read_ava_csv(str(path))


def test_ava_cli_needs_sizes_and_imports_upstream(ava_csvs, tmp_path, capsys):
    csv_dir, _ = ava_csvs
    main = _script("prepare_ava_search").main
    assert main(["--csv-dir", csv_dir, "--val-test", VAL_TEST, "--output", str(tmp_path / "x")]) == 1
    assert "--default-size" in capsys.readouterr().err
    up = tmp_path / "upstream"
    up.mkdir()
    item = ({"id": "vidA", "frames": [902, 903], "label": [10],
             "boxes": [[0.2, 0.1, 0.9, 0.5], [0.2, 0.1, 0.9, 0.5]]},  # [y1, x1, y2, x2]
            {"id": "vidA", "start": 900, "end": 905, "gt": [[], [], [[0.2, 0.1, 0.9, 0.5]], [], []]})
    (up / "val.json").write_text(json.dumps([item]))
    assert main(["--csv-dir", csv_dir, "--val-test", VAL_TEST, "--output", str(tmp_path / "y"),
                 "--splits", "val", "--default-size", "320x240", "--upstream-dir", str(up)]) == 0
    p = load_pairs(str(tmp_path / "y" / "pairs" / "val.json"))["pairs"][0]
    assert p["query"]["boxes"][902] == [32.0, 48.0, 160.0, 216.0]
    assert p["segments"] == [[902, 903]] and p["boxes"] == {902: [[32.0, 48.0, 160.0, 216.0]]}


# ---------------------------------------------------------------------------- registration
def test_registration(tmp_path):
    names = {s.name for s in SPLITS}
    assert len(names) == 12 and "synthreloc_spatio_temporal_val" in names
    anet.prepare_activitynet_search(ANET, str(tmp_path / "activitynet_search"), splits=("test",))
    register_all(str(tmp_path))
    register_all(str(tmp_path))  # registering again (re-import) is fine
    assert names <= set(DatasetCatalog.list())
    recs = DatasetCatalog.get("activitynet_search_test")
    assert len(recs) == 978
    r = recs[0]
    assert r["task"] == "temporal" and r["dataset"] == "activitynet_search_test"
    assert os.path.isabs(r["query"]["video"])
    assert r["query"]["video"].startswith(str(tmp_path / "activitynet_search" / "videos"))
    meta = MetadataCatalog.get("activitynet_search_test")
    assert meta.evaluator_type == "relocnet_temporal" and meta.task == "temporal"
    assert meta.video_root == str(tmp_path / "activitynet_search" / "pairs")
    assert MetadataCatalog.get("ava_search_val").evaluator_type == "relocnet_spatio_temporal"
    missing = str(tmp_path / "ava_search" / "pairs" / "val.json")
    with pytest.raises(FileNotFoundError, match="prepare_ava_search.py") as e:
        DatasetCatalog.get("ava_search_val")
    assert missing in str(e.value)
    with pytest.raises(FileNotFoundError, match="prepare_synthetic.py"):
        DatasetCatalog.get("synthreloc_temporal_train")
    register_reloc_pairs("tmp_wrong_task", str(tmp_path / "activitynet_search/pairs/test.json"),
                         task="spatio_temporal", evaluator_type="relocnet_spatio_temporal")
    with pytest.raises(ValueError, match="registered as 'spatio_temporal'"):
        DatasetCatalog.get("tmp_wrong_task")
    DatasetCatalog.remove("tmp_wrong_task")
    MetadataCatalog.remove("tmp_wrong_task")
    register_all()  # back to the default root for other tests
    assert Counter(MetadataCatalog.get(n).task for n in names) == {"temporal": 6,
                                                                   "spatio_temporal": 6}
