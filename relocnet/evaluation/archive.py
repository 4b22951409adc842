"""Archive search metrics: did the search find the right video and segment among all videos?

Ground truth (``{"task": "archive", "queries": [...]}``), one entry per query:
``{"query_id", "query", "query_start", "query_end", "video", "segments": [[s, e], ...]}``
(the archive video that holds the query's content and where), and optionally ``"places"``:
``[{"video", "segments"}, ...]``, other places that show the same content (copies); a hit on
any of them is right. Predictions
(``{"task": "archive", "predictions": {query_id: [hit, ...]}}``): hits ranked best first, each
``{"video", "start", "end", "score"}``, as in `relocnet search`'s results.json.

A hit is right when its video is the query's and its tIoU with a ground-truth segment is
>= TIOU. Metrics (percent): ``R@1`` (the first hit is right), ``R@10`` (one of the first ten),
``mean_tIoU@1`` (of the first hit; 0 for a wrong video), and, against reference predictions
(e.g. exhaustive per-video re-localization), ``agreement@1``: the two first hits lie in the same
video with tIoU >= TIOU between them (no hit on either side agrees only with no hit).
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..utils.fileio import read_json
from .metrics import tiou

__all__ = ["TIOU", "load_archive_file", "archive_metrics", "same_place", "write_archive_file",
           "archive_from_pairs"]

TIOU = 0.5


def _fail(path: str, problem: str):
    raise ValueError(f"{path}: {problem}")


def load_archive_file(path: str, key: str) -> Any:
    """The ``key`` ("queries" or "predictions") of an archive JSON file, checked for shape."""
    data = read_json(path, ValueError)
    if not isinstance(data, dict) or data.get("task") != "archive" or key not in data:
        _fail(path, f'expected {{"task": "archive", "{key}": ...}}')
    value = data[key]
    if key == "queries":
        if not isinstance(value, list) or not all(
                isinstance(q, dict) and {"query_id", "video", "segments"} <= set(q) for q in value):
            _fail(path, 'each query needs "query_id", "video" and "segments"')
    elif not isinstance(value, dict) or not all(
            isinstance(h, list) and all(isinstance(x, dict) and {"video", "start", "end"} <= set(x)
                                        for x in h) for h in value.values()):
        _fail(path, 'predictions: {query_id: [{"video", "start", "end", "score"}, ...]}')
    return value


def write_archive_file(path: str, key: str, value: Any) -> None:
    from ..data.pairs import write_json_atomic

    write_json_atomic(path, {"task": "archive", key: value}, indent=1)


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def same_place(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two hits in the same video with tIoU >= TIOU."""
    return _norm(a["video"]) == _norm(b["video"]) and tiou(
        (a["start"], a["end"]), (b["start"], b["end"])) >= TIOU


def _best_tiou(hit: Mapping[str, Any], truth: Mapping[str, Any]) -> float:
    """The hit's best tIoU with a ground-truth segment of its video (0: a wrong video)."""
    video = _norm(hit["video"])
    return max((tiou((hit["start"], hit["end"]), s)
                for place in [truth] + list(truth.get("places", []))
                if _norm(place["video"]) == video for s in place["segments"]), default=0.0)


def archive_metrics(truth: Sequence[Mapping[str, Any]], predictions: Mapping[str, List[Any]],
                    reference: Optional[Mapping[str, List[Any]]] = None) -> Dict[str, Any]:
    """Metrics of ``predictions`` (and agreement with ``reference``) over the queries of
    ``truth``; a query without predictions counts as a miss."""
    if not truth:
        raise ValueError("no queries to score")
    r1 = r10 = agree = 0
    tious = []
    for q in truth:
        hits = predictions.get(q["query_id"], [])
        first = [_best_tiou(h, q) for h in hits[:10]]
        tious.append(first[0] if first else 0.0)
        r1 += bool(first) and first[0] >= TIOU
        r10 += any(t >= TIOU for t in first)
        if reference is not None:
            other = reference.get(q["query_id"], [])
            agree += (not hits and not other) or bool(hits and other and same_place(hits[0],
                                                                                    other[0]))
    n = len(truth)
    out = {"R@1": 100.0 * r1 / n, "R@10": 100.0 * r10 / n,
           "mean_tIoU@1": 100.0 * sum(tious) / n, "queries": n}
    if reference is not None:
        out["agreement@1"] = 100.0 * agree / n
    return out


def archive_from_pairs(pair_file: str) -> Tuple[List[str], List[Dict[str, Any]]]:
    """A temporal pair file as an archive: (every reference video, one query per pair whose
    ground truth is its reference and segments)."""
    from ..data.pairs import load_pairs, resolve_video

    pairs = load_pairs(pair_file)["pairs"]

    def path(video: str) -> str:
        return os.path.normpath(resolve_video(pair_file, video))

    truth = [{"query_id": p["pair_id"], "query": path(p["query"]["video"]),
              "query_start": p["query"]["start"], "query_end": p["query"]["end"],
              "video": path(p["reference"]["video"]),
              "segments": p["segments"]} for p in pairs]
    return sorted({t["video"] for t in truth}), truth
