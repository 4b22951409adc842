"""The pair file: the one annotation format every relocnet tool reads and writes.

A pair file is JSON::

    {"task": "temporal" | "spatio_temporal",
     "pairs": [{"pair_id": str, "label": str,
                "query": {"video": str, "start": float, "end": float,
                          "boxes": {second: [x1, y1, x2, y2]}},          # spatio-temporal only
                "reference": {"video": str, "start": float, "end": float},
                "segments": [[s, e], ...],                                  # ground truth
                "boxes": {second: [[x1, y1, x2, y2], ...]}}]}               # spatio-temporal only

Times are seconds of the video file. ``second`` keys are integer seconds t: the box belongs
to the 1-second sub-clip [t, t + 1) of the file, drawn on its keyframe (the frame at t + 0.5).
Boxes are in pixels of the video file (XYXY_ABS). ``video`` paths are relative to the pair
file's directory unless absolute. Ground-truth ``segments`` lie inside the reference span;
``boxes`` keys lie inside the segments.

In memory, second keys are ``int``; files store them as JSON strings.
"""
import math
import os
from typing import Any, Dict, List

from ..utils.fileio import read_json, write_json_atomic

TASKS = ("temporal", "spatio_temporal")

__all__ = ["PairFileError", "TASKS", "load_pairs", "save_pairs", "validate_pairs",
           "resolve_video", "write_json_atomic", "seconds_to_segments"]


class PairFileError(ValueError):
    """A pair file (or a prediction file) that does not follow the documented format."""


def _fail(path: str, where: str, problem: str):
    raise PairFileError(f"{path}: {where}: {problem}")


def _number(path, where, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(path, where, f"expected a finite number, got {value!r}")
    return float(value)


def _box(path, where, value, frame_size=None) -> List[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        _fail(path, where, f"expected a box [x1, y1, x2, y2], got {value!r}")
    x1, y1, x2, y2 = (_number(path, where, v) for v in value)
    if not (x2 > x1 and y2 > y1):
        _fail(path, where, f"box {value!r} has no area (need x2 > x1 and y2 > y1)")
    if min(x1, y1) < 0:
        _fail(path, where, f"box {value!r} lies outside the frame (negative coordinate)")
    if frame_size is not None:
        w, h = frame_size
        if x2 > w or y2 > h:
            _fail(path, where, f"box {value!r} lies outside the {w}x{h} frame")
    return [x1, y1, x2, y2]


def _second_key(path, where, key) -> int:
    try:
        t = int(key)
    except (TypeError, ValueError):
        _fail(path, where, f"box key {key!r} is not an integer second")
    if str(t) != str(key).strip() and not isinstance(key, int):
        _fail(path, where, f"box key {key!r} is not an integer second")
    return t


def _span(path, where, d, require_boxes: bool) -> Dict[str, Any]:
    if not isinstance(d, dict):
        _fail(path, where, f"expected an object, got {type(d).__name__}")
    for k in ("video", "start", "end"):
        if k not in d:
            _fail(path, where, f"missing key {k!r}")
    if not isinstance(d["video"], str) or not d["video"]:
        _fail(path, where, "'video' must be a non-empty string")
    start, end = _number(path, where, d["start"]), _number(path, where, d["end"])
    if start < 0 or end <= start:
        _fail(path, where, f"span [{start}, {end}] is empty or negative")
    out = dict(d)
    out["start"], out["end"] = start, end
    if "boxes" in d or require_boxes:
        boxes = d.get("boxes")
        if not isinstance(boxes, dict) or not boxes:
            _fail(path, where, "spatio-temporal queries need 'boxes': {second: [x1, y1, x2, y2]}")
        parsed = {}
        for key, box in boxes.items():
            t = _second_key(path, f"{where}.boxes", key)
            if not (start - 1 < t < end):
                _fail(path, f"{where}.boxes[{key}]", f"second {t} lies outside [{start}, {end}]")
            if isinstance(box, list) and box and isinstance(box[0], (list, tuple)):  # D >= 1
                parsed[t] = [_box(path, f"{where}.boxes[{key}]", b) for b in box]
            else:
                parsed[t] = _box(path, f"{where}.boxes[{key}]", box)
        out["boxes"] = dict(sorted(parsed.items()))
    return out


def _pair(path: str, i: int, p: Any, task: str) -> Dict[str, Any]:
    where = f"pairs[{i}]"
    if not isinstance(p, dict):
        _fail(path, where, f"expected an object, got {type(p).__name__}")
    for k in ("pair_id", "query", "reference", "segments"):
        if k not in p:
            _fail(path, where, f"missing key {k!r}")
    out = dict(p)
    out["pair_id"] = str(p["pair_id"])
    out["label"] = str(p.get("label", ""))
    st = task == "spatio_temporal"
    out["query"] = _span(path, f"{where}.query", p["query"], require_boxes=st)
    ref = _span(path, f"{where}.reference", p["reference"], require_boxes=False)
    out["reference"] = ref
    segs = p["segments"]
    if not isinstance(segs, list):
        _fail(path, f"{where}.segments", "expected a list of [start, end]")
    parsed = []
    for j, seg in enumerate(segs):
        w = f"{where}.segments[{j}]"
        if not isinstance(seg, (list, tuple)) or len(seg) != 2:
            _fail(path, w, f"expected [start, end], got {seg!r}")
        s, e = _number(path, w, seg[0]), _number(path, w, seg[1])
        if e <= s:
            _fail(path, w, f"segment [{s}, {e}] is empty")
        if s < ref["start"] - 1e-6 or e > ref["end"] + 1e-6:
            _fail(path, w, f"segment [{s}, {e}] lies outside the reference span "
                           f"[{ref['start']}, {ref['end']}]")
        parsed.append([s, e])
    out["segments"] = sorted(parsed)
    if st:
        boxes = p.get("boxes", {})
        if not isinstance(boxes, dict):
            _fail(path, f"{where}.boxes", "expected {second: [[x1, y1, x2, y2], ...]}")
        gt = {}
        for key, blist in boxes.items():
            t = _second_key(path, f"{where}.boxes", key)
            w = f"{where}.boxes[{key}]"
            if not isinstance(blist, list):
                _fail(path, w, "expected a list of boxes")
            if not any(s - 1 < t < e for s, e in out["segments"]):
                _fail(path, w, f"second {t} is not inside any ground-truth segment")
            gt[t] = [_box(path, w, b) for b in blist]
        out["boxes"] = dict(sorted(gt.items()))
    return out


def validate_pairs(data: Any, path: str = "<pairs>") -> Dict[str, Any]:
    """Check a parsed pair file and return it with numbers and second keys normalized.

    Raises:
        PairFileError: naming ``path``, the offending entry and the problem.
    """
    if not isinstance(data, dict):
        _fail(path, "top level", "expected an object with 'task' and 'pairs'")
    task = data.get("task")
    if task not in TASKS:
        _fail(path, "task", f"expected one of {TASKS}, got {task!r}")
    pairs = data.get("pairs")
    if not isinstance(pairs, list):
        _fail(path, "pairs", "expected a list")
    out_pairs = [_pair(path, i, p, task) for i, p in enumerate(pairs)]
    ids = [p["pair_id"] for p in out_pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        _fail(path, "pairs", f"duplicate pair_id values {dup}")
    out = {k: v for k, v in data.items() if k not in ("task", "pairs")}
    out.update(task=task, pairs=out_pairs)
    return out


def load_pairs(path: str) -> Dict[str, Any]:
    """Read and validate a pair file. Raises PairFileError with the file name on any problem."""
    return validate_pairs(read_json(path, PairFileError), path)


def resolve_video(pair_file: str, video: str) -> str:
    """Resolve a pair's ``video`` entry relative to the pair file's directory."""
    if os.path.isabs(video):
        return video
    return os.path.join(os.path.dirname(os.path.abspath(pair_file)), video)


def seconds_to_segments(seconds) -> List[List[int]]:
    """Sorted whole seconds -> maximal segments [s, e) of consecutive seconds."""
    segs: List[List[int]] = []
    for t in seconds:
        if segs and segs[-1][1] == t:
            segs[-1][1] = t + 1
        else:
            segs.append([t, t + 1])
    return segs


def save_pairs(path: str, task: str, pairs: List[Dict[str, Any]], **extra) -> None:
    """Validate and atomically write a pair file. Extra keys (e.g. ``seed``) go at the top."""
    data = validate_pairs({"task": task, "pairs": pairs, **extra}, path)
    write_json_atomic(path, data, indent=1)
