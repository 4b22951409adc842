"""Evaluation and calibration on the real-footage copy set (relocnet/data/real_copies.py).

For each case the query is re-localized in its reference (the streamed ``relocalize`` of the CLI,
features cached per reference), and the top-1 segment, its match probability and the model's
``found`` are kept. Metrics: the share of positives whose top-1 segment has tIoU >= 0.5 with the
ground truth, and the share of positives / negatives whose ``found`` is right.

Calibration (:func:`choose_threshold`): the match threshold that maximizes the balanced accuracy
of ``found`` (mean of the positive and negative accuracies) over validation cases; among equally
good thresholds, the midpoint of the widest gap between top-1 probabilities.
"""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..engine.feature_cache import FeatureCache
from ..engine.inference import prepare_query, relocalize
from .metrics import tiou

__all__ = ["evaluate_cases", "summarize", "choose_threshold"]


def evaluate_cases(model, cfg, cases: Sequence[Dict[str, Any]],
                   cache: Optional[FeatureCache] = None) -> List[Dict[str, Any]]:
    """One row per case: top-1 segment, its probability, ``found`` and tIoU (positives)."""
    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    rows, queries = [], {}
    for case in cases:
        if case["query"] not in queries:  # each query is searched in 2 references
            query, _, _ = prepare_query(case["query"], fps=v.FPS, size=size,
                                        query_seconds=v.QUERY_SECONDS,
                                        min_seconds=v.MIN_QUERY_SECONDS)
            query["descriptor"] = model.query_descriptor(dict(query, pair_id=case["query"]))
            queries = {case["query"]: query}
        query = queries[case["query"]]
        out = relocalize(model, query, case["reference"], fps=v.FPS, size=size, cache=cache,
                         cfg=cfg).outputs
        top = [float(x) for x in out["segments"][0].tolist()]
        gt = case.get("ground_truth")
        rows.append({
            "query": case["query"], "reference": case["reference"],
            "source": case.get("source"), "transform": case.get("transform"),
            "positive": gt is not None, "ground_truth": gt, "top1": top,
            "probability": float(out["segment_probabilities"][0]), "found": bool(out["found"]),
            "tiou": float(tiou(top, gt)) if gt is not None else None,
        })
    return rows


def summarize(rows: Sequence[Dict[str, Any]], threshold: Optional[float] = None
              ) -> Dict[str, Any]:
    """Hit rate (tIoU >= 0.5) on positives; ``found`` accuracy on positives and negatives, with
    the rows' own decisions or, given ``threshold``, with ``probability >= threshold``."""
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]

    def found(r):
        return r["found"] if threshold is None else r["probability"] >= threshold

    def share(xs):
        return round(100.0 * float(np.mean(xs)), 1) if xs else None

    return {"positives": len(pos), "negatives": len(neg),
            "top1_tiou_0.5": share([r["tiou"] >= 0.5 for r in pos]),
            "mean_tiou": round(float(np.mean([r["tiou"] for r in pos])), 3) if pos else None,
            "found_positives": share([found(r) for r in pos]),
            "found_negatives": share([not found(r) for r in neg])}


def choose_threshold(rows: Sequence[Dict[str, Any]]) -> float:
    """The threshold on top-1 probability with the best balanced accuracy of ``found``."""
    pos = np.array([r["probability"] for r in rows if r["positive"]])
    neg = np.array([r["probability"] for r in rows if not r["positive"]])
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("calibration needs positive and negative cases")
    values = np.unique(np.concatenate([pos, neg, [0.0, 1.0]]))
    candidates = (values[:-1] + values[1:]) / 2
    gaps = values[1:] - values[:-1]
    acc = [((pos >= t).mean() + (neg < t).mean()) / 2 for t in candidates]
    best = max(acc)
    ties = [i for i, a in enumerate(acc) if a >= best - 1e-12]
    return float(candidates[max(ties, key=lambda i: gaps[i])])
