"""Property-based tests (Hypothesis) of the pair and prediction parsers, tools/evaluate.py and
the metrics: any JSON gives a result or a one-line error, never a traceback; metrics do not
depend on the order of the pairs or of the predictions (ties included)."""
import importlib.util
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relocnet.data.pairs import PairFileError, validate_pairs
from relocnet.evaluation.metrics import spatio_temporal_metrics, temporal_metrics
from relocnet.evaluation.predictions import PredictionFileError, validate_predictions

EVALUATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tools", "evaluate.py")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats()
           | st.text(max_size=8))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)
seconds = st.integers(0, 30)
scores = st.sampled_from([0.1, 0.5, 0.5, 0.9])  # ties on purpose
box = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 30),
                st.integers(1, 30)).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])


@st.composite
def pair_files(draw, task):
    pairs = []
    for i in range(draw(st.integers(1, 5))):
        s = draw(st.integers(0, 20))
        e = s + draw(st.integers(3, 10))
        pair = {"pair_id": f"p{i}", "label": draw(st.sampled_from("ABC")),
                "query": {"video": "q.mp4", "start": 0, "end": 3},
                "reference": {"video": "r.mp4", "start": s, "end": e},
                "segments": [[s + 1, e - 1]]}
        if task == "spatio_temporal":
            pair["query"]["boxes"] = {"0": [0, 0, 10, 10]}
            pair["boxes"] = {str(t): draw(st.lists(box, max_size=2)) for t in range(s + 1, e - 1)}
        pairs.append(pair)
    return {"task": task, "pairs": pairs}


@st.composite
def predictions(draw, data):
    results = {}
    for p in data["pairs"]:
        s, e = p["reference"]["start"], p["reference"]["end"]
        if data["task"] == "temporal":
            entry = st.builds(lambda a, b, x: {"segment": [min(a, b), max(a, b)], "score": x},
                              st.integers(s, e), st.integers(s, e), scores)
        else:
            entry = st.builds(lambda t, b, x: {"second": t, "box": b, "score": x},
                              st.integers(s, e - 1), box, scores)
        results[p["pair_id"]] = draw(st.lists(entry, max_size=5))
    return {"task": data["task"], "results": results}


def _mutate(draw, value):
    """``value`` with one element somewhere replaced by arbitrary JSON."""
    if isinstance(value, (dict, list)) and value and draw(st.booleans()):
        keys = list(value) if isinstance(value, dict) else list(range(len(value)))
        k = draw(st.sampled_from(keys))
        value = dict(value) if isinstance(value, dict) else list(value)
        value[k] = _mutate(draw, value[k])
        return value
    return draw(json_values)


@st.composite
def damaged(draw, files):
    return _mutate(draw, draw(files))


def _load_cli():
    spec = importlib.util.spec_from_file_location("relocnet_tools_evaluate", EVALUATE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CLI = _load_cli()


@SETTINGS
@given(json_values | damaged(pair_files("temporal")) | damaged(pair_files("spatio_temporal")))
def test_pair_parser_gives_a_result_or_a_pair_file_error(data):
    try:
        validate_pairs(data, "x.json")
    except PairFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("x.json: ")


@SETTINGS
@given(st.data())
def test_prediction_parser_gives_a_result_or_a_prediction_file_error(data):
    task = data.draw(st.sampled_from(["temporal", "spatio_temporal"]))
    pairs = data.draw(pair_files(task))
    spans = {p["pair_id"]: (p["reference"]["start"], p["reference"]["end"])
             for p in pairs["pairs"]}
    preds = data.draw(json_values | damaged(predictions(pairs)))
    try:
        validate_predictions(preds, task, spans=spans, path="y.json")
    except PredictionFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("y.json: ")


@SETTINGS
@given(st.data())
def test_evaluate_tool_prints_metrics_or_one_line(data):
    task = data.draw(st.sampled_from(["temporal", "spatio_temporal"]))
    valid = pairs = data.draw(pair_files(task))
    if data.draw(st.booleans()):
        pairs = data.draw(damaged(st.just(pairs)))
    preds = data.draw(json_values | damaged(predictions(valid)) | predictions(valid))
    with tempfile.TemporaryDirectory() as d:
        for name, value in (("pairs.json", pairs), ("pred.json", preds)):
            with open(os.path.join(d, name), "w") as f:
                json.dump(value, f)
        _run_cli(["--pairs", os.path.join(d, "pairs.json"), "--predictions",
                  os.path.join(d, "pred.json")])


def _run_cli(argv):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = CLI.main(argv)
    if rc == 0:
        json.loads(out.getvalue().strip().splitlines()[-1])
    else:
        assert rc == 1 and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
        assert err.getvalue().startswith("evaluate.py: error: ")


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    for name, text in (("pairs.json", "[" * 100_000), ("pred.json", '{"a":' * 100_000)):
        (tmp_path / name).write_text(text)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"task": "temporal", "pairs": [
        {"pair_id": "p", "query": {"video": "q", "start": 0, "end": 1},
         "reference": {"video": "r", "start": 0, "end": 9}, "segments": [[1, 2]]}]}))
    for pairs, pred in ((tmp_path / "pairs.json", good), (good, tmp_path / "pred.json")):
        _run_cli(["--pairs", str(pairs), "--predictions", str(pred)])


def test_absurd_predictions_are_refused(tmp_path):
    pairs = {"p": (0.0, 30.0)}
    for entry, problem in (({"segment": [-5, 3], "score": 1}, "before 0 s"),
                           ({"segment": [3000, 4000], "score": 1}, "outside the pair's"),
                           ({"segment": [1e300, 1e301], "score": 1}, "outside the pair's")):
        try:
            validate_predictions({"results": {"p": [entry]}}, "temporal", spans=pairs)
        except PredictionFileError as exc:
            assert problem in str(exc)
        else:
            raise AssertionError(f"{entry} accepted")
    for b in ([-10, 0, 5, 5], [0, -3, 5, 5]):
        try:
            validate_predictions({"results": {"p": [{"second": 1, "box": b, "score": 1}]}},
                                 "spatio_temporal")
        except PredictionFileError as exc:
            assert "negative coordinate" in str(exc)
        else:
            raise AssertionError(f"{b} accepted")


def _shuffled(draw, pairs, preds):
    order = draw(st.permutations(pairs["pairs"]))
    return order, {k: draw(st.permutations(v)) for k, v in
                   draw(st.permutations(list(preds["results"].items())))}


@SETTINGS
@given(st.data())
def test_metrics_do_not_depend_on_the_order_of_pairs_or_predictions(data):
    task = data.draw(st.sampled_from(["temporal", "spatio_temporal"]))
    pairs = validate_pairs(data.draw(pair_files(task)))
    preds = data.draw(predictions(pairs))
    metric = temporal_metrics if task == "temporal" else spatio_temporal_metrics
    try:
        expected = metric(pairs["pairs"], preds["results"])
    except ValueError:  # no ground-truth boxes: nothing to score
        return
    order, shuffled = _shuffled(data.draw, pairs, preds)
    assert metric(order, shuffled) == expected
