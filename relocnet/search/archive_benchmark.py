"""Archive benchmark: coarse, coarse-to-fine and exhaustive search of every query of an archive.

For each query of an archive ground-truth file (relocnet/evaluation/archive.py) and an index of
the archive (`relocnet index`):

- ``coarse``: the voted candidates alone, ranked by their coarse score;
- ``fine``: `relocnet search` (coarse, then the correlation model on the best ``--candidates``);
- ``exhaustive``: `relocalize` of the query in every video of the archive (features cached),
  each video's best segment, ranked across the archive by its mean match probability.

Reported: archive R@1 / R@10 / mean tIoU of each, their agreement@1 with exhaustive, the
coverage (the exhaustive first hit's centre lies in one of the spans the fine stage examined:
a candidate widened by ``--margin``), and the seconds per query of each stage (query decoding
included in ``end_to_end``). Prediction files go to ``--output`` for tools/evaluate.py.
"""
import argparse
import os
import statistics
import sys
import time
from typing import Any, Dict, List

import numpy as np

from ..engine.feature_cache import FeatureCache
from ..engine.inference import load_model, prepare_query, relocalize
from ..evaluation.archive import archive_metrics, load_archive_file, write_archive_file
from .archive_search import Hit, best_segment, search_archive
from .snapshot import load_snapshot

__all__ = ["add_arguments", "run_archive_benchmark"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--queries", required=True, help="archive ground truth (queries.json)")
    p.add_argument("--index", required=True, help="index of the archive (relocnet index)")
    p.add_argument("--output", required=True, help="prediction files go here")
    p.add_argument("--config-file", default="", help="default: the index's model")
    p.add_argument("--weights", default=None, help="default: the index's model")
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--neighbors", type=int, default=100)
    p.add_argument("--margin", type=int, default=3)
    p.add_argument("--no-exhaustive", action="store_true")
    p.add_argument("--cache-dir", default="output/benchmark_cache/features",
                   help="feature cache of the exhaustive search")


def _rows(hits: List[Hit]) -> List[Dict[str, Any]]:
    return [{"video": h.video, "start": h.start, "end": h.end, "score": h.score,
             "candidate": list(h.candidate)} for h in hits]


def _exhaustive(model, query, snapshot, *, fps, size, cache, cfg) -> List[Dict[str, Any]]:
    hits = []
    for v in snapshot.videos:
        out = relocalize(model, query, v["path"], fps=fps, size=size, cache=cache, cfg=cfg).outputs
        start, end, prob = best_segment(out)
        hits.append({"video": v["path"], "start": start, "end": end, "score": prob})
    return sorted(hits, key=lambda h: -h["score"])


def _covered(first: Dict[str, Any], fine: List[Dict[str, Any]], margin: int) -> bool:
    centre = (first["start"] + first["end"]) / 2
    return any(h["video"] == first["video"] and h["candidate"][0] - margin <= centre
               < h["candidate"][1] + margin for h in fine)


def _model(args, meta):
    from ..engine.setup import setup_cfg

    cfg_file = args.config_file or meta["config_file"]
    weights = meta["weights"] if args.weights is None else args.weights
    cfg = setup_cfg(argparse.Namespace(config_file=cfg_file, opts=[]), log=False)
    return cfg, load_model(cfg, weights)


def run_archive_benchmark(args):
    truth = load_archive_file(args.queries, "queries")
    snapshot = load_snapshot(args.index)
    cfg, model = _model(args, snapshot.meta)
    v = cfg.INPUT.VIDEO
    fps, size = v.FPS, (v.HEIGHT, v.WIDTH)
    cache = FeatureCache(args.cache_dir)
    preds: Dict[str, Dict[str, Any]] = {"coarse": {}, "fine": {}, "exhaustive": {}}
    times: Dict[str, List[float]] = {k: [] for k in ("end_to_end", "coarse", "fine",
                                                     "exhaustive")}
    coverage = []
    for q in truth:
        t0 = time.perf_counter()
        query, _, _ = prepare_query(q["query"], fps=fps, size=size, query_seconds=v.QUERY_SECONDS,
                                    min_seconds=v.MIN_QUERY_SECONDS, start=q.get("query_start"),
                                    end=q.get("query_end"))
        fine, t = search_archive(model, query, snapshot, fps=fps, size=size,
                                 neighbors=args.neighbors, candidates=args.candidates,
                                 margin=args.margin)
        times["end_to_end"].append(time.perf_counter() - t0)
        times["coarse"].append(t["query_descriptors"] + t["coarse"])
        times["fine"].append(t["fine"])
        coarse, _ = search_archive(model, query, snapshot, fps=fps, size=size,
                                   neighbors=args.neighbors, candidates=10, fine=False)
        preds["fine"][q["query_id"]] = _rows(fine)
        preds["coarse"][q["query_id"]] = _rows(coarse)
        if not args.no_exhaustive:
            t1 = time.perf_counter()
            ex = _exhaustive(model, query, snapshot, fps=fps, size=size, cache=cache, cfg=cfg)
            times["exhaustive"].append(time.perf_counter() - t1)
            preds["exhaustive"][q["query_id"]] = ex
            coverage.append(_covered(ex[0], preds["fine"][q["query_id"]], args.margin))
        print(f"archive benchmark: query {len(preds['fine'])}/{len(truth)} done",
              file=sys.stderr, flush=True)
    return _report(args, truth, preds, times, coverage, snapshot.meta)


def _report(args, truth, preds, times, coverage, meta):
    os.makedirs(args.output, exist_ok=True)
    ex = preds["exhaustive"] if coverage else None
    rows = []
    for name in ("coarse", "fine", "exhaustive"):
        if name == "exhaustive" and ex is None:
            continue
        write_archive_file(os.path.join(args.output, f"{name}.json"), "predictions", preds[name])
        m = archive_metrics(truth, preds[name], ex)
        t = times["end_to_end" if name == "fine" else name]
        rows.append(dict({k: round(x, 1) for k, x in m.items()},
                         method=name, s_per_query=round(statistics.median(t), 3) if t else None))
    result = {"archive": rows, "queries": len(truth), "videos": len(meta["videos"]),
              "hours": round(meta["hours"], 3), "index": meta["description"],
              "coverage": round(100.0 * float(np.mean(coverage)), 1) if coverage else None,
              "seconds_per_query": {k: round(statistics.median(x), 3)
                                    for k, x in times.items() if x},
              "candidates": args.candidates, "margin": args.margin}
    cols = ["method", "R@1", "R@10", "mean_tIoU@1", "agreement@1", "s_per_query"]
    lines = [f"archive {args.queries}: {len(truth)} queries, {len(meta['videos'])} videos, "
             f"{meta['hours']:.2f} h, {meta['description']}"]
    lines += ["  ".join(f"{c:>12}" for c in cols)]
    lines += ["  ".join(f"{str(r.get(c, '-')):>12}" for c in cols) for r in rows]
    lines.append(f"coverage (exhaustive first hit among the fine stage's spans): "
                 f"{result['coverage']} %; median s/query: {result['seconds_per_query']}")
    return "\n".join(lines), result
