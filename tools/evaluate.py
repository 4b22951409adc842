#!/usr/bin/env python
"""Score a prediction file against a pair file; the last line printed is the metrics as JSON.

    python tools/evaluate.py --pairs PAIRS.json --predictions PRED.json [--fps-eval K]
        [--bootstrap 1000]
    python tools/evaluate.py --pairs A.json B.json C.json --predictions PA.json PB.json PC.json
    python tools/evaluate.py --pairs ARCHIVE_QUERIES.json --predictions ARCHIVE_PRED.json
        [--agreement-with EXHAUSTIVE_PRED.json]

The metric follows the pair file's task: temporal -> R@1 at tIoU > 0.5..0.9 (upstream's "mAP"),
their mean and mean tIoU; spatio_temporal -> per-label PASCAL VOC AP at IoU 0.5/0.3/0.7 and the
mean over labels; archive (relocnet/evaluation/archive.py: ground truth written by
`tools/benchmark.py archive`, predictions from `relocnet search`) -> archive R@1, R@10 (right
video and tIoU >= 0.5), mean tIoU and agreement with other predictions. Values are percent. Bad input: a one-line message on stderr, exit status 1.

Several pair files (one prediction file each, in the same order; e.g. the data seeds of a
benchmark tier): each file's table, then the mean over the files (keys every file has), which is
what the last line holds. ``--bootstrap N``: the 95 % basic bootstrap interval of the headline value
(mean R@1 over tIoU 0.5:0.9, mean tIoU; AP@0.5) over N resamplings of each file's pairs
(``metrics.bootstrap_interval``), as keys ``<metric> 95% low`` / ``<metric> 95% high``: how much
the value would move on other pairs drawn like these.
"""
import argparse
import functools
import json
import math
import sys
import warnings

# torch.jit's deprecation notice, raised while detectron2 imports, is noise on a CLI's stderr.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")

from relocnet.data.pairs import PairFileError, load_pairs  # noqa: E402
from relocnet.evaluation.archive import archive_metrics, load_archive_file  # noqa: E402
from relocnet.evaluation.metrics import (  # noqa: E402
    bootstrap_interval, check_fps_eval, spatio_temporal_metrics, temporal_metrics)
from relocnet.evaluation.predictions import load_predictions  # noqa: E402
from relocnet.utils.fileio import read_json  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", required=True, nargs="+",
                   help="pair file(s) (ground truth); several: their mean is reported too")
    p.add_argument("--predictions", required=True, nargs="+",
                   help="prediction file(s), one per pair file, in the same order")
    p.add_argument("--by-label", action="store_true",
                   help="temporal only: also score each label's pairs separately "
                        "(keys '<metric>/<label>')")
    p.add_argument("--fps-eval", type=int, default=None,
                   help="spatio_temporal only: frames evaluated per reference second (default 1)")
    p.add_argument("--agreement-with", default="",
                   help="archive only: predictions to compare the first hits with (agreement@1)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="temporal / spatio_temporal: 95%% interval of the headline metrics over N "
                        "resamplings of the pairs (e.g. 1000; default 0: none)")
    return p.parse_args(argv)


HEADLINE = {"temporal": ("mean R@1 (tIoU 0.5:0.9)", "mean tIoU"), "spatio_temporal": ("AP@0.5",)}


def _task(path: str) -> str:
    """The file's "task", or "" (load_pairs then reports what is wrong with the file)."""
    try:
        data = read_json(path, ValueError)
    except ValueError:
        return ""
    return data.get("task", "") if isinstance(data, dict) else ""


def evaluate_archive(args, pairs, predictions):
    if args.bootstrap:
        raise ValueError("--bootstrap applies to temporal and spatio_temporal pair files")
    truth = load_archive_file(pairs, "queries")
    preds = load_archive_file(predictions, "predictions")
    other = load_archive_file(args.agreement_with, "predictions") if args.agreement_with else None
    return "archive", archive_metrics(truth, preds, other)


def format_table(metrics) -> str:
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:8.2f}" if isinstance(v, float) else f"{k:<{width}}  {v:8d}"
            for k, v in metrics.items()]
    return "\n".join(rows)


def _load(args, pair_file, prediction_file):
    """(task, ground-truth pairs, predictions, metric function) of one pair file."""
    pairs = load_pairs(pair_file)
    task, gt = pairs["task"], pairs["pairs"]
    if task == "spatio_temporal" and args.by_label:
        raise ValueError("--by-label applies to temporal pair files; spatio_temporal metrics "
                         "are already per label")
    if task == "temporal" and args.fps_eval is not None:
        raise ValueError("--fps-eval applies only to spatio_temporal pair files, "
                         f"{pair_file} is temporal")
    fps = 1 if args.fps_eval is None else args.fps_eval
    check_fps_eval(fps)
    preds = load_predictions(prediction_file, task, spans={
        p["pair_id"]: (p["reference"]["start"], p["reference"]["end"]) for p in gt})
    metric = (temporal_metrics if task == "temporal"
              else functools.partial(spatio_temporal_metrics, fps_eval=fps))
    return task, gt, preds, metric


def _score(args, pair_file, gt, preds, metric):
    try:
        metrics = metric(gt, preds)
        if args.by_label:
            for label in sorted({p["label"] for p in gt}):
                sub = metric([p for p in gt if p["label"] == label], preds)
                metrics.update({f"{k}/{label}": v for k, v in sub.items()})
        return metrics
    except ValueError as e:  # nothing to score
        raise ValueError(f"{pair_file}: {e}") from None


def evaluate(args):
    """(task, metrics, per-file metrics) for the parsed arguments (per-file: {pair file: metrics}
    when there are several, else empty); ValueError/PairFileError on bad input."""
    if len(args.pairs) != len(args.predictions):
        raise ValueError(f"{len(args.pairs)} pair files but {len(args.predictions)} prediction "
                         "files: give one prediction file per pair file, in the same order")
    if any(_task(p) == "archive" for p in args.pairs):
        if len(args.pairs) > 1:
            raise ValueError("archive ground-truth files are scored one at a time")
        return (*evaluate_archive(args, args.pairs[0], args.predictions[0]), {})
    if args.agreement_with:
        raise ValueError("--agreement-with applies to archive ground-truth files")
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise ValueError(f"--bootstrap {args.bootstrap}: give 0 (none) or at least 2 resamplings")
    if len(set(args.pairs)) < len(args.pairs):
        raise ValueError("a pair file is given twice: each pair file once, with its predictions")
    loaded = [_load(args, p, q) for p, q in zip(args.pairs, args.predictions)]
    tasks = {task for task, *_ in loaded}
    if len(tasks) > 1:
        raise ValueError(f"the pair files mix tasks ({', '.join(sorted(tasks))}): score each "
                         "task on its own")
    task = tasks.pop()
    per_file = {p: _score(args, p, gt, preds, metric)
                for p, (_, gt, preds, metric) in zip(args.pairs, loaded)}
    if len(per_file) == 1:
        metrics = dict(next(iter(per_file.values())))
    else:
        common = set.intersection(*(set(m) for m in per_file.values()))
        metrics = {k: (sum(m[k] for m in per_file.values()) if k == "num_pairs"
                       else math.fsum(m[k] for m in per_file.values()) / len(per_file))
                   for k in next(iter(per_file.values())) if k in common and k != "num_labels"}
        metrics["num_files"] = len(per_file)
    if args.bootstrap:
        sets = [(gt, preds) for _, gt, preds, _ in loaded]
        for pair_file, (gt, _) in zip(args.pairs, sets):
            if len(gt) < 2:
                raise ValueError(f"{pair_file}: --bootstrap needs at least 2 pairs per file, it "
                                 f"has {len(gt)}")
        for key in HEADLINE[task]:
            try:
                low, high = bootstrap_interval(sets, loaded[0][3], key, samples=args.bootstrap)
            except ValueError as e:
                raise ValueError(f"{' '.join(args.pairs)}: {e}") from None
            metrics[f"{key} 95% low"], metrics[f"{key} 95% high"] = low, high
    return task, metrics, (per_file if len(per_file) > 1 else {})


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        task, metrics, per_file = evaluate(args)
    except (PairFileError, ValueError) as e:
        msg = str(e).replace("\n", " ")
        print(f"evaluate.py: error: {msg}", file=sys.stderr)
        return 1
    for (pairs, values), predictions in zip(per_file.items(), args.predictions):
        print(f"{task} re-localization: {predictions} vs {pairs}")
        print(format_table(values))
    if per_file:
        print(f"mean over the {len(per_file)} pair files")
    else:
        print(f"{task} re-localization: {args.predictions[0]} vs {args.pairs[0]}")
    print(format_table(metrics))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
