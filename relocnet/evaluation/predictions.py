"""Prediction files: read, validate, write (atomically), and build them from model outputs.

Layout (``task`` and other top-level keys are optional; ``task``, when present, must match)::

    temporal        {"results": {pair_id: [{"segment": [s, e], "score": x}, ...]}}
    spatio_temporal {"results": {pair_id: [{"second": t, "box": [x1, y1, x2, y2], "score": x}, ...]}}

Segments are seconds of the reference video file (0 <= s <= e; with the ground truth known, a
segment must reach into its pair's reference span); seconds are integers >= 0; boxes are pixels
of the video file (0 <= x1 <= x2, 0 <= y1 <= y2). Numbers must be finite. Extra keys inside an
entry are ignored. A pair id that the ground truth does not know is an error; a pair that is
missing (or has an empty list) simply has no prediction.
"""
import math
import os
from typing import Any, Collection, Dict, List, Mapping, Optional, Tuple

from relocnet.data.pairs import TASKS, PairFileError, write_json_atomic
from relocnet.utils.fileio import read_json

__all__ = ["PredictionFileError", "validate_predictions", "load_predictions",
           "write_predictions", "entries_from_output", "prediction_file_name"]


Spans = Mapping[str, Tuple[float, float]]


class PredictionFileError(PairFileError):
    """A prediction file that does not follow the documented format."""


def _fail(path: str, where: str, problem: str):
    raise PredictionFileError(f"{path}: {where}: {problem}")


def _number(path: str, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, where, f"expected a finite number, got {value!r}")
    return float(value)


def _numbers(path: str, where: str, value: Any, n: int, what: str) -> List[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        _fail(path, where, f"expected {what}, got {value!r}")
    return [_number(path, where, v) for v in value]


def _entry(path: str, where: str, entry: Any, task: str, span=None) -> Dict[str, Any]:
    keys = ("segment", "score") if task == "temporal" else ("second", "box", "score")
    if not isinstance(entry, dict):
        _fail(path, where, f"expected an object with keys {list(keys)}, got {entry!r}")
    for k in keys:
        if k not in entry:
            _fail(path, where, f"missing key {k!r}")
    score = _number(path, f"{where}.score", entry["score"])
    if task == "temporal":
        s, e = _numbers(path, f"{where}.segment", entry["segment"], 2, "[start, end]")
        if e < s or s < 0:
            _fail(path, f"{where}.segment", f"segment [{s}, {e}] " + (
                "starts before 0 s" if s < 0 else "ends before it starts"))
        if span is not None and not (s <= span[1] and e >= span[0]):
            _fail(path, f"{where}.segment", f"segment [{s}, {e}] lies outside the pair's "
                                            f"reference span [{span[0]}, {span[1]}] (seconds)")
        return {"segment": [s, e], "score": score}
    t = entry["second"]
    if isinstance(t, float) and t.is_integer():
        t = int(t)
    if isinstance(t, bool) or not isinstance(t, int):
        _fail(path, f"{where}.second", f"expected an integer second, got {t!r}")
    box = _numbers(path, f"{where}.box", entry["box"], 4, "a box [x1, y1, x2, y2]")
    if box[2] < box[0] or box[3] < box[1] or min(box) < 0:
        _fail(path, f"{where}.box", f"box {entry['box']!r} has x2 < x1 or y2 < y1"
              if min(box) >= 0 else f"box {entry['box']!r} has a negative coordinate")
    if t < 0:
        _fail(path, f"{where}.second", f"second {t} is negative")
    return {"second": t, "box": box, "score": score}


def validate_predictions(data: Any, task: str, *, pair_ids: Optional[Collection[str]] = None,
                         spans: Optional[Spans] = None, path: str = "<predictions>"
                         ) -> Dict[str, List[Dict[str, Any]]]:
    """Check parsed prediction-file data; return ``{pair_id: [normalized entries]}``.

    ``spans`` ({pair_id: (reference start, end)}, implies ``pair_ids``): temporal segments must
    reach into their pair's reference span (a segment elsewhere is no answer to the pair,
    usually a unit mistake: milliseconds or frames for seconds).

    Raises:
        PredictionFileError: naming ``path``, the offending entry and the problem, also for a
            pair id outside ``pair_ids`` (when given).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        _fail(path, "top level", "expected an object {\"results\": {pair_id: [...]}}")
    if "task" in data and data["task"] != task:
        _fail(path, "task", f"predictions are for {data['task']!r}, the pairs are {task!r}")
    if spans is not None and pair_ids is None:
        pair_ids = spans
    if pair_ids is not None:
        known = set(pair_ids)
        unknown = sorted(k for k in data["results"] if k not in known)
        if unknown:
            _fail(path, "results", f"{len(unknown)} pair id(s) not in the ground truth, "
                                   f"e.g. {unknown[:5]}")
    out = {}
    for pid, entries in data["results"].items():
        where = f"results[{pid!r}]"
        if not isinstance(entries, list):
            _fail(path, where, f"expected a list of predictions, got {type(entries).__name__}")
        span = spans.get(pid) if spans is not None else None
        out[pid] = [_entry(path, f"{where}[{i}]", e, task, span) for i, e in enumerate(entries)]
    return out


def _no_duplicate_keys(path: str):
    def hook(items):
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})[:5]
            _fail(path, "JSON", f"duplicate keys {dup}")
        return dict(items)
    return hook


def load_predictions(path: str, task: str, *, pair_ids: Optional[Collection[str]] = None,
                     spans: Optional[Spans] = None) -> Dict[str, List[Dict[str, Any]]]:
    """Read and validate a prediction file (see :func:`validate_predictions`)."""
    data = read_json(path, PredictionFileError, object_pairs_hook=_no_duplicate_keys(path))
    return validate_predictions(data, task, pair_ids=pair_ids, spans=spans, path=path)


def write_predictions(path: str, task: str, results: Mapping[str, List[Mapping[str, Any]]]
                      ) -> None:
    """Validate and write a prediction file atomically (temp file + rename)."""
    data = {"task": task, "results": {str(k): list(v) for k, v in results.items()}}
    data["results"] = validate_predictions(data, task, path=path)
    write_json_atomic(path, data)


def _as_list(x) -> list:
    return x.tolist() if hasattr(x, "tolist") else list(x)


def entries_from_output(output: Mapping[str, Any], task: str) -> List[Dict[str, Any]]:
    """Prediction-file entries of one model output (the contracts' inference dict).

    temporal: ``segments`` (K, 2) and ``segment_scores`` (K); spatio_temporal: ``instances``
    with ``pred_boxes``, ``scores`` and ``seconds``.
    """
    if task == "temporal":
        segs, scores = _as_list(output["segments"]), _as_list(output["segment_scores"])
        if len(segs) != len(scores):
            raise ValueError(f"{len(segs)} segments but {len(scores)} segment_scores")
        return [{"segment": [float(s), float(e)], "score": float(x)}
                for (s, e), x in zip(segs, scores)]
    if task == "spatio_temporal":
        inst = output["instances"]
        boxes = inst.pred_boxes.tensor if hasattr(inst.pred_boxes, "tensor") else inst.pred_boxes
        return [{"second": int(t), "box": [float(v) for v in b], "score": float(x)}
                for b, x, t in zip(_as_list(boxes), _as_list(inst.scores),
                                   _as_list(inst.seconds))]
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def prediction_file_name(pair_file: str) -> str:
    """``predictions_<dataset>_<pair file>.json`` for the predictions of ``pair_file``, the
    dataset being the folder above its ``pairs/`` folder (the tools' output layout)."""
    folder = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(pair_file))))
    return f"predictions_{folder}_{os.path.splitext(os.path.basename(pair_file))[0]}.json"
