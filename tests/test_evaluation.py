"""Evaluators against cases computed by hand (the arithmetic is in the comments)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from relocnet.data.pairs import save_pairs
from relocnet.evaluation import (PredictionFileError, SpatioTemporalRelocEvaluator,
                                 TemporalRelocEvaluator, build_reloc_evaluator,
                                 load_predictions, write_predictions)
from relocnet.evaluation.metrics import (bootstrap_interval, box_iou, label_detections,
                                         match_second, pair_tiou, spatio_temporal_metrics,
                                         temporal_metrics, tiou, voc_average_precision)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE = os.path.join(REPO, "tools", "evaluate.py")


# ----------------------------------------------------------------------------- hand-made data

def _pair(pid, label, ref, segments, boxes=None):
    p = {"pair_id": pid, "label": label, "query": {"video": "q.mp4", "start": 0, "end": 3},
         "reference": {"video": "r.mp4", "start": ref[0], "end": ref[1]}, "segments": segments}
    if boxes is not None:
        p["query"]["boxes"] = {0: [0, 0, 10, 10]}
        p["boxes"] = boxes
    return p


def temporal_case():
    gt = [_pair("p1", "x", (0, 30), [[10, 20]]),
          _pair("p2", "x", (0, 30), [[0, 10]]),
          _pair("p3", "x", (0, 30), [[0, 10]]),
          _pair("p4", "x", (0, 30), [[0, 4], [10, 20]]),
          _pair("p5", "x", (0, 30), [[5, 9]])]
    preds = {
        # tie at 0.9: each is the top-1 with weight 1/2 -> tIoU 1 and 0
        "p1": [{"segment": [10, 20], "score": 0.9}, {"segment": [0, 5], "score": 0.9}],
        # top-1 is [0, 5] (0.8 > 0.2); vs [0, 10]: inter 5 / union 10 = 0.5 exactly
        "p2": [{"segment": [30, 40], "score": 0.2}, {"segment": [0, 5], "score": 0.8}],
        # p3: missing -> tIoU 0
        # two GT segments: [10, 18] vs [10, 20] = 8 / 10 = 0.8; vs [0, 4] = 0 -> best 0.8
        "p4": [{"segment": [10, 18], "score": 0.7}],
        "p5": [],  # empty list -> tIoU 0
    }
    return gt, preds


# tIoUs: [{1.0, 0} half each, 0.5, 0, 0.8, 0], n = 5
# > 0.5: 0.5 (p1) + 1 (p4) -> 1.5/5 = 30 %; > 0.6: 30; > 0.7: 30; > 0.8: 0.5 (p1; 0.8 is not
# > 0.8) -> 10; > 0.9: 10; mean = (30 + 30 + 30 + 10 + 10) / 5 = 22; mean tIoU = 1.8 / 5 -> 36 %
TEMPORAL_EXPECTED = {"R@1,tIoU>0.5": 30.0, "R@1,tIoU>0.6": 30.0, "R@1,tIoU>0.7": 30.0,
                     "R@1,tIoU>0.8": 10.0, "R@1,tIoU>0.9": 10.0,
                     "mean R@1 (tIoU 0.5:0.9)": 22.0, "mean tIoU": 36.0, "num_pairs": 5}

G = [0, 0, 10, 10]


def spatio_case():
    gt = [
        # label A: 3 GT boxes (1 at second 2, 2 at second 3)
        _pair("a1", "A", (0, 10), [[2, 4]], {2: [G], 3: [G, [20, 20, 30, 30]]}),
        # label B: 2 GT boxes over two pairs
        _pair("b1", "B", (0, 5), [[1, 2]], {1: [G]}),
        _pair("b2", "B", (0, 5), [[2, 3]], {2: [[50, 50, 60, 60]]}),
        # label C: no GT box at all -> left out of the mean
        _pair("c1", "C", (0, 5), [[1, 2]], {}),
    ]
    preds = {
        "a1": [{"second": 2, "box": G, "score": 0.9},                   # IoU 1 -> TP
               {"second": 2, "box": G, "score": 0.8},                   # same GT again -> FP
               {"second": 3, "box": [20, 20, 30, 30], "score": 0.7},    # IoU 1 -> TP
               {"second": 5, "box": G, "score": 0.6},                   # no GT at 5 -> FP
               {"second": 12, "box": G, "score": 0.95}],                # outside [0, 10]: ignored
        "b1": [{"second": 1, "box": [10, 0, 20, 10], "score": 0.9},     # touches GT: IoU 0 -> FP
               {"second": 1, "box": [0, 0, 10, 5], "score": 0.5}],      # IoU 50/100 = 0.5
        "b2": [{"second": 2, "box": [50, 50, 60, 54], "score": 0.3}],   # IoU 40/100 = 0.4
        "c1": [{"second": 1, "box": G, "score": 0.9}],
    }
    return gt, preds


# A (all thresholds): ranks 0.9 TP, 0.8 FP, 0.7 TP, 0.6 FP; num_gt 3
#   P = 1, 1/2, 2/3, 1/2; R = 1/3, 1/3, 2/3, 2/3; monotone P = 1, 2/3, 2/3, 1/2
#   AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
# B @0.5: 0.9 FP, 0.5 TP (0.5 >= 0.5), 0.3 FP; num_gt 2 -> P = 0, 1/2, 1/3; R = 0, 1/2, 1/2
#   AP = 1/2 * 1/2 = 1/4
# B @0.3: 0.9 FP, 0.5 TP, 0.3 TP -> P = 0, 1/2, 2/3; R = 0, 1/2, 1; monotone P = 2/3, 2/3, 2/3
#   AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3
# B @0.7: all FP -> 0
SPATIO_EXPECTED = {
    "AP@0.5": 100 * (5 / 9 + 1 / 4) / 2, "AP@0.3": 100 * (5 / 9 + 2 / 3) / 2,
    "AP@0.7": 100 * (5 / 9 + 0) / 2,
    "AP@0.5/A": 100 * 5 / 9, "AP@0.5/B": 25.0, "AP@0.3/A": 100 * 5 / 9,
    "AP@0.3/B": 100 * 2 / 3, "AP@0.7/A": 100 * 5 / 9, "AP@0.7/B": 0.0,
    "num_pairs": 4, "num_labels": 2,
}


def assert_metrics(got, expected):
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k


# ----------------------------------------------------------------------------- temporal

def test_tiou_by_hand():
    assert tiou([2, 4], [0, 10]) == pytest.approx(0.2)  # nested: 2 / 10
    assert tiou([0, 10], [2, 4]) == pytest.approx(0.2)  # symmetric
    assert tiou([0, 1], [2, 3]) == 0.0                  # disjoint
    assert tiou([0, 2], [2, 5]) == 0.0                  # touching at 2
    assert tiou([1, 3], [1, 3]) == 1.0                  # identical
    assert tiou([0, 4], [2, 6]) == pytest.approx(1 / 3)  # inter 2 / union 6
    assert tiou([3, 3], [0, 10]) == 0.0                 # empty prediction


def test_temporal_metrics_by_hand():
    gt, preds = temporal_case()
    assert_metrics(temporal_metrics(gt, preds), TEMPORAL_EXPECTED)


def test_strict_threshold_and_ties():
    # tIoU exactly 0.5 ([0, 5] vs [0, 10]) is not > 0.5; 0.6 ([0, 6]) is > 0.5 but not > 0.6
    gt = [_pair("p", "x", (0, 30), [[0, 10]])]
    m = temporal_metrics(gt, {"p": [{"segment": [0, 5], "score": 1.0}]})
    assert m["R@1,tIoU>0.5"] == 0.0 and m["mean tIoU"] == pytest.approx(50.0)
    m = temporal_metrics(gt, {"p": [{"segment": [0, 6], "score": 1.0}]})
    assert m["R@1,tIoU>0.5"] == 100.0 and m["R@1,tIoU>0.6"] == 0.0
    # tie in score: each tied entry is the top-1 with weight 1/2, whatever the order
    tied = [{"segment": [20, 25], "score": 0.5}, {"segment": [0, 10], "score": 0.5}]
    assert pair_tiou([[0, 10]], tied) == pair_tiou([[0, 10]], tied[::-1]) == 0.5
    m = temporal_metrics(gt, {"p": tied})
    assert m["R@1,tIoU>0.9"] == 50.0 and m == temporal_metrics(gt, {"p": tied[::-1]})


def test_temporal_empty_predictions_and_no_pairs():
    gt, _ = temporal_case()
    m = temporal_metrics(gt, {})
    assert m["mean tIoU"] == 0.0 and m["R@1,tIoU>0.5"] == 0.0 and m["num_pairs"] == 5
    with pytest.raises(ValueError, match="no ground-truth pairs"):
        temporal_metrics([], {})


# ----------------------------------------------------------------------------- spatio-temporal

def test_box_iou_by_hand():
    assert box_iou(G, G) == 1.0
    assert box_iou(G, [10, 0, 20, 10]) == 0.0           # touch along x = 10
    assert box_iou(G, [10, 10, 20, 20]) == 0.0          # touch at a corner
    assert box_iou(G, [0, 0, 10, 5]) == pytest.approx(0.5)    # 50 / 100
    assert box_iou(G, [5, 0, 15, 10]) == pytest.approx(1 / 3)  # 50 / (100 + 100 - 50)


def test_voc_average_precision_by_hand():
    # ranks TP, FP, TP, FP with 3 GT -> 5/9 (see label A); input order must not matter
    assert voc_average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 3) == pytest.approx(5 / 9)
    assert voc_average_precision([0.7, 0.6, 0.9, 0.8], [1, 0, 1, 0], 3) == pytest.approx(5 / 9)
    assert voc_average_precision([], [], 2) == 0.0      # GT but no detections
    assert math.isnan(voc_average_precision([0.5], [0], 0))


def test_spatio_temporal_metrics_by_hand():
    gt, preds = spatio_case()
    assert_metrics(spatio_temporal_metrics(gt, preds), SPATIO_EXPECTED)


def test_duplicates_and_best_match_rule():
    # second detection of the same GT is a false positive
    assert match_second([{"box": G, "score": 0.9}, {"box": G, "score": 0.8}], [G], 0.5) == [
        (0.9, True), (0.8, False)]
    # GT g1 = G, g2 = [5, 0, 15, 10]. d2 = [2, 0, 12, 10]: IoU g1 = 80/120 = 0.667,
    # IoU g2 = 70/130 = 0.538. d2 goes to g1 (highest), already taken by d1 -> FP, although
    # g2 is free and above 0.5 (VOC/AVA rule). AP = 1/2 recall at precision 1 = 0.5.
    gts = [G, [5, 0, 15, 10]]
    dets = [{"box": [2, 0, 12, 10], "score": 0.8}, {"box": G, "score": 0.9}]
    assert match_second(dets, gts, 0.5) == [(0.9, True), (0.8, False)]
    gt = [_pair("p", "A", (0, 5), [[1, 2]], {1: gts})]
    m = spatio_temporal_metrics(gt, {"p": [dict(d, second=1) for d in dets]})
    assert m["AP@0.5"] == pytest.approx(50.0)


def test_fps_eval_scaling():
    # one GT at second 1; a (0.9, IoU 1) and b (0.9, IoU 0) tie: one operating point
    gt = [_pair("p", "A", (0, 5), [[1, 2]], {1: [G]})]
    preds = {"p": [{"second": 1, "box": G, "score": 0.9},
                   {"second": 1, "box": [20, 20, 30, 30], "score": 0.9}]}
    # fps 1: {TP, FP} at one score with 1 GT -> recall 1 at precision 1/2 -> AP 0.5
    assert spatio_temporal_metrics(gt, preds)["AP@0.5"] == pytest.approx(50.0)
    # fps 3: frames a b a' b' a'' b'': 3 TP and 3 FP at one score with 3 GT -> R 1, P 1/2
    scores, flags, num_gt = label_detections(gt, preds, 0.5, fps_eval=3)["A"]
    assert num_gt == 3 and flags == [True, False] * 3
    m = spatio_temporal_metrics(gt, preds, fps_eval=3)
    assert m["AP@0.5"] == pytest.approx(50.0)
    # distinct scores: the k copies keep the same curve -> AP unchanged (100)
    preds["p"][1]["score"] = 0.8
    assert spatio_temporal_metrics(gt, preds, fps_eval=3)["AP@0.5"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="fps_eval"):
        spatio_temporal_metrics(gt, preds, fps_eval=0)


def test_reference_span_and_labels_without_gt():
    # reference [2.5, 7.2]: sub-clips 2..7 overlap it; seconds 1 and 8 are ignored
    gt = [_pair("p", "A", (2.5, 7.2), [[3, 4]], {3: [G]}), _pair("q", "Z", (0, 5), [[1, 2]], {})]
    preds = {"p": [{"second": t, "box": G, "score": 0.1 * t} for t in (1, 2, 7, 8)]}
    scores, flags, num_gt = label_detections(gt, preds, 0.5)["A"]
    assert scores == pytest.approx([0.2, 0.7]) and flags == [False, False] and num_gt == 1
    m = spatio_temporal_metrics(gt, preds)
    assert m["num_labels"] == 1 and "AP@0.5/Z" not in m and m["AP@0.5"] == 0.0
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        spatio_temporal_metrics(gt[1:], {})


# ----------------------------------------------------------------------------- evaluators

def _register(name, task, pairs, evaluator_type):
    records = [dict(p, task=task, dataset=name) for p in pairs]
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(evaluator_type=evaluator_type)


def _temporal_output(entries):
    segs = torch.tensor([e["segment"] for e in entries], dtype=torch.float32).reshape(-1, 2)
    scores = torch.tensor([e["score"] for e in entries], dtype=torch.float32)
    return {"segments": segs, "segment_scores": scores}


def _spatio_output(entries):
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([e["box"] for e in entries],
                                         dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([e["score"] for e in entries], dtype=torch.float32)
    inst.seconds = torch.tensor([e["second"] for e in entries], dtype=torch.long)
    return {"instances": inst}


def _run(evaluator, gt, preds, make_output):
    evaluator.reset()
    with_preds = [p for p in gt if p["pair_id"] in preds]  # pairs without outputs stay missing
    for i in range(0, len(with_preds), 2):  # batches of 2
        batch = with_preds[i:i + 2]
        evaluator.process(batch, [make_output(preds[p["pair_id"]]) for p in batch])
    return evaluator.evaluate()


def test_temporal_evaluator_matches_pure_function(tmp_path):
    gt, preds = temporal_case()
    _register("_test_reloc_temporal", "temporal", gt, "relocnet_temporal")
    ev = build_reloc_evaluator("_test_reloc_temporal", output_dir=str(tmp_path))
    assert isinstance(ev, TemporalRelocEvaluator)
    res = _run(ev, gt, preds, _temporal_output)
    assert list(res) == ["temporal"]
    assert_metrics(res["temporal"], TEMPORAL_EXPECTED)
    written = load_predictions(str(tmp_path / "reloc_predictions.json"), "temporal",
                               pair_ids=[p["pair_id"] for p in gt])
    assert_metrics(temporal_metrics(gt, written), TEMPORAL_EXPECTED)
    # a spatio-temporal evaluator refuses temporal records
    with pytest.raises(ValueError, match="temporal"):
        _run(SpatioTemporalRelocEvaluator("_test_reloc_temporal"), gt, {}, _spatio_output)


def test_spatio_temporal_evaluator_matches_pure_function():
    gt, preds = spatio_case()
    _register("_test_reloc_st", "spatio_temporal", gt, "relocnet_spatio_temporal")
    ev = build_reloc_evaluator("_test_reloc_st")
    assert isinstance(ev, SpatioTemporalRelocEvaluator)
    assert_metrics(_run(ev, gt, preds, _spatio_output)["spatio_temporal"], SPATIO_EXPECTED)
    ev3 = SpatioTemporalRelocEvaluator("_test_reloc_st", fps_eval=3)
    got = _run(ev3, gt, preds, _spatio_output)["spatio_temporal"]
    assert_metrics(got, spatio_temporal_metrics(gt, preds, fps_eval=3))
    with pytest.raises(KeyError, match="pair_id"):
        ev.process([{"label": "A"}], [_spatio_output([])])
    _register("_test_reloc_coco", "spatio_temporal", gt, "coco")
    with pytest.raises(ValueError, match="evaluator_type 'coco'"):
        build_reloc_evaluator("_test_reloc_coco")


# ----------------------------------------------------------------------------- files and CLI

def _load_cli():
    spec = importlib.util.spec_from_file_location("relocnet_tools_evaluate", EVALUATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(*args, cwd):
    """Run tools/evaluate.py as a user would; PYTHONPATH makes it use this checkout's package."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, EVALUATE, *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def _files(tmp_path, task, gt, preds):
    pairs, pred = tmp_path / f"{task}_pairs.json", tmp_path / f"{task}_pred.json"
    save_pairs(str(pairs), task, gt)
    write_predictions(str(pred), task, preds)
    return str(pairs), str(pred)


def test_cli_subprocess_last_line_is_json(tmp_path):
    gt, preds = spatio_case()
    pairs, pred = _files(tmp_path, "spatio_temporal", gt, preds)
    out = _cli("--pairs", pairs, "--predictions", pred, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert_metrics(json.loads(out.stdout.strip().splitlines()[-1]), SPATIO_EXPECTED)
    assert any(line.startswith("AP@0.5/A ") for line in out.stdout.splitlines()[:-1])


def test_cli_in_process_temporal_and_fps(tmp_path, capsys):
    cli = _load_cli()
    gt, preds = temporal_case()
    pairs, pred = _files(tmp_path, "temporal", gt, preds)
    assert cli.main(["--pairs", pairs, "--predictions", pred]) == 0
    assert_metrics(json.loads(capsys.readouterr().out.strip().splitlines()[-1]),
                   TEMPORAL_EXPECTED)
    assert cli.main(["--pairs", pairs, "--predictions", pred, "--fps-eval", "3"]) == 1
    assert "only to spatio_temporal" in capsys.readouterr().err
    # bad input: status 1, nothing on stdout, one line on stderr naming the file
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {"p1": [')
    assert cli.main(["--pairs", pairs, "--predictions", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert str(bad) in err and "not valid JSON" in err
    gt, preds = spatio_case()
    pairs, pred = _files(tmp_path, "spatio_temporal", gt, preds)
    assert cli.main(["--pairs", pairs, "--predictions", pred, "--fps-eval", "3"]) == 0
    assert_metrics(json.loads(capsys.readouterr().out.strip().splitlines()[-1]),
                   spatio_temporal_metrics(gt, preds, fps_eval=3))


BAD_FILES = [
    ('{"results": ', "not valid JSON"),
    ('[1, 2]', "expected an object"),
    ('{"results": {"zz": []}}', "not in the ground truth"),
    ('{"results": {"p1": {"segment": [0, 1]}}}', "expected a list"),
    ('{"results": {"p1": [{"segment": [0, 1]}]}}', "missing key 'score'"),
    ('{"results": {"p1": [{"segment": [0, 1, 2], "score": 1}]}}', "expected [start, end]"),
    ('{"results": {"p1": [{"segment": [5, 1], "score": 1}]}}', "ends before it starts"),
    ('{"results": {"p1": [{"segment": [0, "a"], "score": 1}]}}', "finite number"),
    ('{"results": {"p1": [{"segment": [0, 1], "score": NaN}]}}', "finite number"),
    ('{"results": {"p1": [], "p1": []}}', "duplicate keys"),
    ('{"task": "spatio_temporal", "results": {}}', "predictions are for 'spatio_temporal'"),
]


@pytest.mark.parametrize("text,problem", BAD_FILES)
def test_bad_temporal_prediction_files(tmp_path, text, problem):
    path = tmp_path / "pred.json"
    path.write_text(text)
    with pytest.raises(PredictionFileError) as e:
        load_predictions(str(path), "temporal", pair_ids=["p1", "p2"])
    assert str(path) in str(e.value) and problem in str(e.value)


@pytest.mark.parametrize("entry,problem", [
    ({"second": 1, "box": [0, 0, 10], "score": 1}, "expected a box"),
    ({"second": 1, "box": [10, 0, 0, 10], "score": 1}, "x2 < x1"),
    ({"second": 1.5, "box": G, "score": 1}, "integer second"),
    ({"second": "1", "box": G, "score": 1}, "integer second"),
    ({"box": G, "score": 1}, "missing key 'second'"),
])
def test_bad_spatio_temporal_entries(tmp_path, entry, problem):
    path = tmp_path / "pred.json"
    path.write_text(json.dumps({"results": {"a1": [entry]}}))
    with pytest.raises(PredictionFileError, match=problem):
        load_predictions(str(path), "spatio_temporal")


def test_write_predictions_is_atomic_and_validated(tmp_path):
    path = tmp_path / "pred.json"
    write_predictions(str(path), "temporal", {"p1": [{"segment": [0, 1], "score": 0.5}]})
    before = path.read_text()
    with pytest.raises(PredictionFileError):
        write_predictions(str(path), "temporal", {"p1": [{"segment": [2, 1], "score": 0.5}]})
    assert path.read_text() == before and os.listdir(tmp_path) == ["pred.json"]
    # missing pairs are allowed: they count as no prediction
    assert load_predictions(str(path), "temporal", pair_ids=["p1", "p2"]) == {
        "p1": [{"segment": [0.0, 1.0], "score": 0.5}]}


def test_cli_by_label_scores_each_label_on_its_own_pairs(tmp_path, capsys):
    cli = _load_cli()
    gt, preds = temporal_case()
    for p in gt[3:]:
        p["label"] = "y"  # label x: p1-p3 (tIoU 1|0 tied, 0.5, 0); y: p4, p5 (tIoU 0.8, 0)
    pairs, pred = _files(tmp_path, "temporal", gt, preds)
    assert cli.main(["--pairs", pairs, "--predictions", pred, "--by-label"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert_metrics({k: v for k, v in got.items() if "/" not in k}, TEMPORAL_EXPECTED)
    # x: > 0.5 only p1's half -> 1/6 at every threshold; mean tIoU (0.5 + 0.5) / 3
    assert got["R@1,tIoU>0.5/x"] == pytest.approx(100 / 6)
    assert got["R@1,tIoU>0.9/x"] == pytest.approx(100 / 6)
    assert got["mean tIoU/x"] == pytest.approx(100 / 3)
    assert got["num_pairs/x"] == 3
    # y: 0.8 > 0.5, 0.6, 0.7 but not > 0.8 -> 50, 50, 50, 0, 0; mean 30; mean tIoU 40
    assert got["R@1,tIoU>0.7/y"] == pytest.approx(50.0)
    assert got["R@1,tIoU>0.8/y"] == pytest.approx(0.0)
    assert got["mean R@1 (tIoU 0.5:0.9)/y"] == pytest.approx(30.0)
    assert got["mean tIoU/y"] == pytest.approx(40.0)
    sgt, spreds = spatio_case()
    spairs, spred = _files(tmp_path, "spatio_temporal", sgt, spreds)
    assert cli.main(["--pairs", spairs, "--predictions", spred, "--by-label"]) == 1


def _hits(prefix, found, missed):
    """Pairs with one segment [0, 10]: ``found`` predicted exactly (tIoU 1), ``missed`` not."""
    gt = [_pair(f"{prefix}{i}", "x", (0, 30), [[0, 10]]) for i in range(found + missed)]
    preds = {f"{prefix}{i}": [{"segment": [0, 10], "score": 1.0}] for i in range(found)}
    return gt, preds


def test_bootstrap_interval_resamples_each_file_on_its_own():
    key = "mean R@1 (tIoU 0.5:0.9)"
    # every pair found: every resampling gives 100
    assert bootstrap_interval([_hits("a", 6, 0)], temporal_metrics, key) == (100.0, 100.0)
    # one file all found, one all missed: each file keeps its pairs, so the mean is always 50
    # (resampling the two files' pairs together would move it)
    low, high = bootstrap_interval([_hits("a", 6, 0), _hits("b", 0, 6)], temporal_metrics, key)
    assert low == pytest.approx(50.0) and high == pytest.approx(50.0)
    # half found: the interval holds 50, and four times the pairs make it about half as wide
    low, high = bootstrap_interval([_hits("a", 10, 10)], temporal_metrics, key, samples=2000)
    low4, high4 = bootstrap_interval([_hits("a", 40, 40)], temporal_metrics, key, samples=2000)
    assert low < 50 < high and low4 < 50 < high4
    assert 0.35 < (high4 - low4) / (high - low) < 0.65
    assert 30 < high - low < 55  # 1.96 * 2 * sqrt(0.25 / 20) * 100 = 43.8
    # the spatio-temporal AP with a resampled pair counted twice; the same seed, the same interval
    gt, preds = spatio_case()
    st = bootstrap_interval([(gt, preds)], spatio_temporal_metrics, "AP@0.5", seed=3)
    assert st == bootstrap_interval([(gt, preds)], spatio_temporal_metrics, "AP@0.5", seed=3)
    assert 0.0 <= st[0] <= spatio_temporal_metrics(gt, preds)["AP@0.5"] <= st[1] <= 100.0
    with pytest.raises(ValueError, match="at least 2 pairs"):
        bootstrap_interval([_hits("a", 1, 0)], temporal_metrics, key)


def test_cli_several_files_mean_and_interval(tmp_path, capsys):
    cli = _load_cli()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa, qa = _files(tmp_path / "a", "temporal", *_hits("a", 3, 1))  # 75 %
    pb, qb = _files(tmp_path / "b", "temporal", *temporal_case())  # 22 % (TEMPORAL_EXPECTED)
    assert cli.main(["--pairs", pa, pb, "--predictions", qa, qb, "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    got = json.loads(out.strip().splitlines()[-1])
    key = "mean R@1 (tIoU 0.5:0.9)"
    assert got[key] == pytest.approx((75.0 + 22.0) / 2)
    assert got["mean tIoU"] == pytest.approx((75.0 + 36.0) / 2)
    assert got["num_pairs"] == 9 and got["num_files"] == 2
    assert got[f"{key} 95% low"] <= got[key] <= got[f"{key} 95% high"]
    assert got[f"{key} 95% low"] < got[f"{key} 95% high"]
    assert f"vs {pa}" in out and f"vs {pb}" in out and "mean over the 2 pair files" in out
    # one file: its own metrics, and the keys of the interval only when asked for
    assert cli.main(["--pairs", pb, "--predictions", qb]) == 0
    assert_metrics(json.loads(capsys.readouterr().out.strip().splitlines()[-1]),
                   TEMPORAL_EXPECTED)
    sp, sq = _files(tmp_path, "spatio_temporal", *spatio_case())
    for argv, problem in ((["--pairs", pa, pb, "--predictions", qa], "2 pair files but 1"),
                          (["--pairs", pa, pa, "--predictions", qa, qa], "given twice"),
                          (["--pairs", pa, sp, "--predictions", qa, sq], "mix tasks"),
                          (["--pairs", pa, "--predictions", qa, "--bootstrap", "1"],
                           "at least 2 resamplings")):
        assert cli.main(argv) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and problem in err, argv


def test_roc_auc():
    from relocnet.evaluation.score_auc import roc_auc

    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5  # ties count half
    assert roc_auc([0.9, 0.3, 0.5], [1, 0, 1]) == 1.0
    assert roc_auc([0.9, 0.1, 0.5, 0.7], [1, 0, 0, 1]) == 1.0
    assert roc_auc([0.9, 0.6, 0.5, 0.7], [1, 0, 1, 0]) == 0.5
    assert roc_auc([1.0], [1]) != roc_auc([1.0], [1])  # nan without negatives


def test_overfit_pairs_tool_trains_and_reports_auc(tmp_path):
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), OMP_NUM_THREADS="1")
    gen = subprocess.run([sys.executable, os.path.join(repo, "datasets", "prepare_synthetic.py"),
                          "--output", str(tmp_path / "synthreloc"), "--seed", "0", "--preset",
                          "tiny"], capture_output=True, text=True, env=env)
    assert gen.returncode == 0, gen.stderr[-2000:]
    cfg = os.path.join(repo, "configs", "synthreloc",
                       "relocnet_R18-L3D_cpu_synthreloc_temporal.yaml")
    run = subprocess.run(
        [sys.executable, os.path.join(repo, "tools", "overfit_pairs.py"), "--config-file", cfg,
         "--num-pairs", "2", "--iters", "2", "--eval-period", "2",
         "INPUT.VIDEO.DECODE_CACHE", "", "SOLVER.IMS_PER_BATCH", "2"],
        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("iter 1: loss_cls ") for line in lines)
    auc = [line for line in lines if "per-second AUC on the 2 pairs" in line]
    assert len(auc) == 1 and 0.0 <= float(auc[0].split()[-1]) <= 1.0
    bad = subprocess.run([sys.executable, os.path.join(repo, "tools", "overfit_pairs.py"),
                          "--config-file", cfg.replace("temporal", "st")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode != 0 and "RelocTemporal" in bad.stderr


def test_archive_metrics_and_cli(tmp_path, capsys):
    from relocnet.evaluation.archive import write_archive_file

    truth = [{"query_id": "a", "video": "/x/v1.mp4", "segments": [[4, 8]]},
             {"query_id": "b", "video": "/x/v2.mp4", "segments": [[0, 3]]},
             {"query_id": "c", "video": "/x/v3.mp4", "segments": [[10, 12]]}]
    hit = lambda v, s, e: {"video": f"/x/{v}.mp4", "start": s, "end": e, "score": 1.0}  # noqa
    preds = {"a": [hit("v1", 5, 8)],  # right (tIoU 0.75)
             "b": [hit("v1", 0, 3)] + [hit("v9", 0, 1)] * 8 + [hit("v2", 1, 3)],  # 10th right
             "c": []}
    exhaustive = {"a": [hit("v1", 4, 8)], "b": [hit("v2", 0, 3)], "c": []}
    files = {k: str(tmp_path / f"{k}.json") for k in ("gt", "pred", "exh")}
    write_archive_file(files["gt"], "queries", truth)
    write_archive_file(files["pred"], "predictions", preds)
    write_archive_file(files["exh"], "predictions", exhaustive)
    cli = _load_cli()
    assert cli.main(["--pairs", files["gt"], "--predictions", files["pred"],
                     "--agreement-with", files["exh"]]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["R@1"] == pytest.approx(100 / 3) and got["R@10"] == pytest.approx(200 / 3)
    assert got["mean_tIoU@1"] == pytest.approx(25.0) and got["queries"] == 3
    assert got["agreement@1"] == pytest.approx(200 / 3)  # a agrees, c: both empty
    (tmp_path / "bad.json").write_text('{"task": "archive", "predictions": {"a": [{}]}}')
    assert cli.main(["--pairs", files["gt"], "--predictions", str(tmp_path / "bad.json")]) == 1
    assert "bad.json: predictions:" in capsys.readouterr().err
