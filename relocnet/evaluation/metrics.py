"""The two re-localization metrics as pure functions (numbers and lists in, a dict of floats out).

Both follow ``../shared/benchmarks/README.md``. Inputs are the pair dicts of a pair file
(``relocnet.data.pairs``) and predictions in the prediction-file layout, keyed by pair id::

    temporal:        {pair_id: [{"segment": [s, e], "score": x}, ...]}
    spatio_temporal: {pair_id: [{"second": t, "box": [x1, y1, x2, y2], "score": x}, ...]}

A pair that is absent from the predictions, or has an empty list, has no prediction.
Every reported value except the counts is in percent (0-100), as the papers report them.

Rules where the benchmark README is silent (chosen here, tested in tests/test_evaluation.py):

* Ties in score are never broken by order: metrics do not depend on the order of the pairs
  or of the entries of a prediction list. Temporal: when k entries share the top score, each is
  the top-1 with weight 1/k (the expectation over any order: a pair adds the fraction of its
  tied top segments with tIoU > t to R@1 and their mean tIoU to the mean). Spatio-temporal:
  detections of equal score form one operating point of the precision/recall curve (as
  scikit-learn's average precision), so it matters not which of them is ranked first; within a
  frame they are matched in the order (score descending, box ascending), which gives the same
  true-positive count per score as any other order. No tolerance is applied to ``tIoU > t``
  or ``IoU >= t``.
* Temporal: a pair whose ground truth has several segments scores the top-1 prediction against
  the best-matching one (highest tIoU). A pair without ground-truth segments scores tIoU 0.
* Spatio-temporal: only detections at seconds t of the reference span (sub-clips [t, t + 1)
  that overlap [start, end], i.e. ``start - 1 < t < end``) count; others are ignored. A
  detection at a reference second without ground truth is a false positive. Ties in IoU go to
  the earlier ground-truth box (the pair file's order, which the ground truth fixes). With
  ``fps_eval = k`` every reference second stands for k frames with identical detections and
  ground truth, matched independently. Labels without ground-truth boxes are left out of
  the per-label keys and of the mean, as the official AVA evaluation does (nanmean).
"""
import math
from typing import Any, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

__all__ = [
    "TIOU_THRESHOLDS", "AP_IOU_THRESHOLDS", "tiou", "top1_segments", "pair_tious", "pair_tiou",
    "temporal_metrics", "box_iou", "match_second", "check_fps_eval", "voc_average_precision",
    "label_detections", "spatio_temporal_metrics", "bootstrap_interval",
]

# Literal thresholds (not np.arange, whose 0.6000000000000001 would shift the strict comparison).
TIOU_THRESHOLDS: Tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
AP_IOU_THRESHOLDS: Tuple[float, ...] = (0.5, 0.3, 0.7)

Predictions = Mapping[str, Sequence[Mapping[str, Any]]]


# ----------------------------------------------------------------------------- temporal


def tiou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of two 1-D intervals [s, e]; 0 for disjoint, touching or empty intervals."""
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return 0.0
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def top1_segments(entries: Sequence[Mapping[str, Any]]) -> List[Sequence[float]]:
    """The segments of the entries that share the highest score (several on a tie); [] if none."""
    if not entries:
        return []
    best = max(entry["score"] for entry in entries)
    return [entry["segment"] for entry in entries if entry["score"] == best]


def pair_tious(gt_segments: Sequence[Sequence[float]],
               entries: Sequence[Mapping[str, Any]]) -> List[float]:
    """tIoU of each top-1 candidate (see top1_segments) with its best-matching ground-truth
    segment; [0.0] without predictions."""
    return [max((tiou(seg, gt) for gt in gt_segments), default=0.0)
            for seg in top1_segments(entries)] or [0.0]


def pair_tiou(gt_segments: Sequence[Sequence[float]],
              entries: Sequence[Mapping[str, Any]]) -> float:
    """Expected tIoU of a pair's top-1 prediction (tied top entries weigh equally)."""
    values = pair_tious(gt_segments, entries)
    return sum(values) / len(values)


def temporal_metrics(gt_pairs: Iterable[Mapping[str, Any]], predictions: Predictions,
                     *, thresholds: Sequence[float] = TIOU_THRESHOLDS) -> Dict[str, float]:
    """Top-1 recall at tIoU > t (strictly), their mean, and the mean tIoU, over all pairs.

    Upstream papers (CGBM, ECCV 2018, and the paper reproduced here) call ``R@1,tIoU>t``
    "mAP" and their mean "Avg. mAP"; it is the fraction of pairs whose top-1 segment has
    tIoU > t. Keys: ``R@1,tIoU>0.5`` ... ``R@1,tIoU>0.9``, ``mean R@1 (tIoU 0.5:0.9)``,
    ``mean tIoU`` (all in percent) and ``num_pairs``.

    Raises:
        ValueError: if there are no ground-truth pairs.
    """
    values = sorted((sorted(pair_tious(p["segments"], predictions.get(str(p["pair_id"]), ())))
                     for p in gt_pairs))  # sorted: sums do not depend on the pairs' order
    if not values:
        raise ValueError("no ground-truth pairs to score")
    n = len(values)
    out: Dict[str, float] = {}
    for t in thresholds:
        out[f"R@1,tIoU>{t:g}"] = 100.0 * math.fsum(sum(v > t for v in vs) / len(vs)
                                                   for vs in values) / n
    recalls = [out[f"R@1,tIoU>{t:g}"] for t in thresholds]
    out[f"mean R@1 (tIoU {min(thresholds):g}:{max(thresholds):g})"] = sum(recalls) / len(recalls)
    out["mean tIoU"] = 100.0 * math.fsum(math.fsum(vs) / len(vs) for vs in values) / n
    out["num_pairs"] = n
    return out


# ----------------------------------------------------------------------------- spatio-temporal


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two XYXY boxes, continuous coordinates (no +1); 0 when they only touch."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_second(detections: Sequence[Mapping[str, Any]], gt_boxes: Sequence[Sequence[float]],
                 iou_threshold: float) -> List[Tuple[float, bool]]:
    """Match one frame's detections to its ground truth, PASCAL VOC / AVA style.

    Detections are taken by descending score, then ascending box; each goes to the box of
    highest IoU (the earlier box on ties). It is a true positive if that IoU >= ``iou_threshold``
    and the box is still unmatched, else a false positive (also when there is no ground truth).

    Returns:
        (score, is_true_positive) per detection, in matching order.
    """
    order = sorted(range(len(detections)),
                   key=lambda i: (-detections[i]["score"], list(detections[i]["box"])))
    matched = [False] * len(gt_boxes)
    out = []
    for i in order:
        det = detections[i]
        best, best_iou = -1, 0.0
        for j, gt in enumerate(gt_boxes):
            iou = box_iou(det["box"], gt)
            if best < 0 or iou > best_iou:
                best, best_iou = j, iou
        tp = best >= 0 and best_iou >= iou_threshold and not matched[best]
        if tp:
            matched[best] = True
        out.append((float(det["score"]), tp))
    return out


def voc_average_precision(scores: Sequence[float], is_tp: Sequence[bool], num_gt: int) -> float:
    """PASCAL VOC area under precision/recall, as the official AVA evaluation computes it.

    Detections are ranked by descending score; detections of equal score are one operating
    point (precision and recall after all of them), so their order does not matter. Precision is
    made monotonically non-increasing from the right and summed over the recall steps. Returns a
    fraction in [0, 1]; 0 when there are no detections; NaN when ``num_gt`` is 0.
    """
    if num_gt <= 0:
        return math.nan
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    recall, precision = [0.0], [0.0]
    tp = 0
    for rank, i in enumerate(order, start=1):
        tp += bool(is_tp[i])
        if rank < len(order) and scores[order[rank]] == scores[i]:
            continue  # the next detection ties: one point after the whole group
        recall.append(tp / num_gt)
        precision.append(tp / rank)
    recall.append(1.0)
    precision.append(0.0)
    for k in range(len(precision) - 2, -1, -1):
        precision[k] = max(precision[k], precision[k + 1])
    return sum((recall[k] - recall[k - 1]) * precision[k]
               for k in range(1, len(recall)) if recall[k] != recall[k - 1])


def check_fps_eval(fps_eval: Any) -> int:
    """Return ``fps_eval`` if it is a positive int, else raise ValueError."""
    if isinstance(fps_eval, bool) or not isinstance(fps_eval, int) or fps_eval < 1:
        raise ValueError(f"fps_eval must be a positive integer, got {fps_eval!r}")
    return fps_eval


def _in_reference(pair: Mapping[str, Any], second: int) -> bool:
    ref = pair["reference"]
    return ref["start"] - 1 < second < ref["end"]


def label_detections(gt_pairs: Iterable[Mapping[str, Any]], predictions: Predictions,
                     iou_threshold: float, *, fps_eval: int = 1
                     ) -> Dict[str, Tuple[List[float], List[bool], int]]:
    """Per label: (scores, is_true_positive, number of ground-truth instances).

    Scores and flags are in pair order, then seconds, frames and matching order; the number of
    ground-truth instances is every ground-truth box of the label's pairs times ``fps_eval``.
    """
    check_fps_eval(fps_eval)
    scores: Dict[str, List[float]] = {}
    flags: Dict[str, List[bool]] = {}
    num_gt: Dict[str, int] = {}
    for pair in gt_pairs:
        label = str(pair.get("label", ""))
        gt = {int(t): boxes for t, boxes in pair.get("boxes", {}).items()}
        num_gt[label] = num_gt.get(label, 0) + fps_eval * sum(len(b) for b in gt.values())
        by_second: Dict[int, List[Mapping[str, Any]]] = {}
        for det in predictions.get(str(pair["pair_id"]), ()):
            if _in_reference(pair, int(det["second"])):
                by_second.setdefault(int(det["second"]), []).append(det)
        for t in sorted(by_second):
            matched = match_second(by_second[t], gt.get(t, ()), iou_threshold)
            for _ in range(fps_eval):  # the second's frames, one after the other
                scores.setdefault(label, []).extend(s for s, _ in matched)
                flags.setdefault(label, []).extend(f for _, f in matched)
    return {label: (scores.get(label, []), flags.get(label, []), n) for label, n in num_gt.items()}


def spatio_temporal_metrics(gt_pairs: Iterable[Mapping[str, Any]], predictions: Predictions,
                            *, fps_eval: int = 1,
                            iou_thresholds: Sequence[float] = AP_IOU_THRESHOLDS
                            ) -> Dict[str, float]:
    """Per-label PASCAL VOC AP at each IoU threshold and its mean over labels (the paper's mAP).

    Keys: ``AP@0.5``, ``AP@0.3``, ``AP@0.7`` (mean over labels with ground truth, percent),
    ``AP@<thr>/<label>`` per label, ``num_pairs`` and ``num_labels`` (labels with ground truth).

    Raises:
        ValueError: if no pair has a ground-truth box, or ``fps_eval`` is not a positive int.
    """
    gt_pairs = list(gt_pairs)
    out: Dict[str, float] = {}
    per_label: Dict[str, float] = {}
    labels: List[str] = []
    for thr in iou_thresholds:
        aps = {}
        for label, (scores, flags, num_gt) in label_detections(
                gt_pairs, predictions, thr, fps_eval=fps_eval).items():
            if num_gt > 0:
                aps[label] = 100.0 * voc_average_precision(scores, flags, num_gt)
        if not aps:
            raise ValueError("no ground-truth boxes to score")
        labels = sorted(aps)
        out[f"AP@{thr:g}"] = math.fsum(aps.values()) / len(aps)
        per_label.update({f"AP@{thr:g}/{label}": aps[label] for label in labels})
    out.update(per_label)
    out["num_pairs"] = len(gt_pairs)
    out["num_labels"] = len(labels)
    return out


# ----------------------------------------------------------------------------- uncertainty


def bootstrap_interval(sets: Sequence[Tuple[Sequence[Mapping[str, Any]], Predictions]],
                       metric: Callable[..., Dict[str, float]], key: str, *,
                       samples: int = 1000, level: float = 0.95, seed: int = 0,
                       bounds: Tuple[float, float] = (0.0, 100.0)) -> Tuple[float, float]:
    """Basic bootstrap interval of the mean over ``sets`` of ``metric(gt, preds)[key]``.

    Each set (the pairs of one pair file and their predictions) has its pairs resampled with
    replacement on its own, so a data seed's pairs stay in it; a pair drawn twice counts twice.
    A resampling the metric cannot score (the spatio-temporal AP of a draw without ground-truth
    boxes) is drawn again. The interval is the *basic* one (the resampled values' quantiles
    reflected about the value, then kept within ``bounds``), not the percentile one: an AP over
    resampled pairs averages higher than the AP itself (+2.5 points on SynthReloc's `standard`
    test pairs), and the reflection undoes that shift; for a mean over pairs, such as R@1, the
    two nearly agree. The interval says how much the value would move on other pairs drawn like
    these: a difference between two models well inside it is not one these pairs can show.

    Args:
        sets: (ground-truth pairs, predictions) per pair file.
        metric: ``temporal_metrics`` or ``spatio_temporal_metrics`` (or a ``functools.partial``
            of it).
        key: the metric's key (e.g. ``"mean R@1 (tIoU 0.5:0.9)"``, ``"AP@0.5"``).
    Returns: (low, high) in the metric's units.
    Raises:
        ValueError: a set with fewer than 2 pairs, or most draws cannot be scored.
    """
    sets = [(list(gt), preds) for gt, preds in sets]
    if not sets or any(len(gt) < 2 for gt, _ in sets):
        raise ValueError("bootstrap: every pair file needs at least 2 pairs")
    value = math.fsum(metric(gt, preds)[key] for gt, preds in sets) / len(sets)
    rng = np.random.default_rng(seed)
    values: List[float] = []
    failed = 0
    while len(values) < samples:
        try:
            values.append(math.fsum(
                metric([gt[i] for i in rng.integers(len(gt), size=len(gt))], preds)[key]
                for gt, preds in sets) / len(sets))
        except ValueError:  # nothing to score in this draw
            failed += 1
            if failed > samples:
                raise ValueError(f"bootstrap: most resamplings of the pairs have nothing to "
                                 f"score for {key!r}") from None
    tail = 100.0 * (1.0 - level) / 2
    q_low, q_high = np.percentile(values, [tail, 100.0 - tail])
    return (float(min(max(2 * value - q_high, bounds[0]), bounds[1])),
            float(min(max(2 * value - q_low, bounds[0]), bounds[1])))
