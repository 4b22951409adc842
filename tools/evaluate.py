#!/usr/bin/env python
"""Score a prediction file against a pair file; the last line printed is the metrics as JSON.

    python tools/evaluate.py --pairs PAIRS.json --predictions PRED.json [--fps-eval K]
    python tools/evaluate.py --pairs ARCHIVE_QUERIES.json --predictions ARCHIVE_PRED.json
        [--agreement-with EXHAUSTIVE_PRED.json]

The metric follows the pair file's task: temporal -> R@1 at tIoU > 0.5..0.9 (upstream's "mAP"),
their mean and mean tIoU; spatio_temporal -> per-label PASCAL VOC AP at IoU 0.5/0.3/0.7 and the
mean over labels; archive (relocnet/evaluation/archive.py: ground truth written by
`tools/benchmark.py archive`, predictions from `relocnet search`) -> archive R@1, R@10 (right
video and tIoU >= 0.5), mean tIoU and agreement with other predictions. Values are percent. Bad input: a one-line message on stderr, exit status 1.
"""
import argparse
import json
import sys
import warnings

# torch.jit's deprecation notice, raised while detectron2 imports, is noise on a CLI's stderr.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")

from relocnet.data.pairs import PairFileError, load_pairs  # noqa: E402
from relocnet.evaluation.archive import archive_metrics, load_archive_file  # noqa: E402
from relocnet.evaluation.metrics import (  # noqa: E402
    check_fps_eval, spatio_temporal_metrics, temporal_metrics)
from relocnet.evaluation.predictions import load_predictions  # noqa: E402
from relocnet.utils.fileio import read_json  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", required=True, help="pair file (ground truth)")
    p.add_argument("--predictions", required=True, help="prediction file")
    p.add_argument("--by-label", action="store_true",
                   help="temporal only: also score each label's pairs separately "
                        "(keys '<metric>/<label>')")
    p.add_argument("--fps-eval", type=int, default=None,
                   help="spatio_temporal only: frames evaluated per reference second (default 1)")
    p.add_argument("--agreement-with", default="",
                   help="archive only: predictions to compare the first hits with (agreement@1)")
    return p.parse_args(argv)


def _task(path: str) -> str:
    """The file's "task", or "" (load_pairs then reports what is wrong with the file)."""
    try:
        data = read_json(path, ValueError)
    except ValueError:
        return ""
    return data.get("task", "") if isinstance(data, dict) else ""


def evaluate_archive(args):
    truth = load_archive_file(args.pairs, "queries")
    preds = load_archive_file(args.predictions, "predictions")
    other = load_archive_file(args.agreement_with, "predictions") if args.agreement_with else None
    return "archive", archive_metrics(truth, preds, other)


def format_table(metrics) -> str:
    width = max(len(k) for k in metrics)
    rows = [f"{k:<{width}}  {v:8.2f}" if isinstance(v, float) else f"{k:<{width}}  {v:8d}"
            for k, v in metrics.items()]
    return "\n".join(rows)


def evaluate(args):
    """(task, metrics) for the parsed arguments; ValueError/PairFileError on bad input."""
    if _task(args.pairs) == "archive":
        return evaluate_archive(args)
    if args.agreement_with:
        raise ValueError("--agreement-with applies to archive ground-truth files")
    pairs = load_pairs(args.pairs)
    task, gt = pairs["task"], pairs["pairs"]
    if task == "spatio_temporal" and args.by_label:
        raise ValueError("--by-label applies to temporal pair files; spatio_temporal metrics "
                         "are already per label")
    if task == "temporal" and args.fps_eval is not None:
        raise ValueError("--fps-eval applies only to spatio_temporal pair files, "
                         f"{args.pairs} is temporal")
    fps = 1 if args.fps_eval is None else args.fps_eval
    check_fps_eval(fps)
    preds = load_predictions(args.predictions, task, spans={
        p["pair_id"]: (p["reference"]["start"], p["reference"]["end"]) for p in gt})
    try:
        if task == "temporal":
            metrics = temporal_metrics(gt, preds)
            if args.by_label:
                for label in sorted({p["label"] for p in gt}):
                    sub = temporal_metrics([p for p in gt if p["label"] == label], preds)
                    metrics.update({f"{k}/{label}": v for k, v in sub.items()})
            return task, metrics
        return task, spatio_temporal_metrics(gt, preds, fps_eval=fps)
    except ValueError as e:  # nothing to score
        raise ValueError(f"{args.pairs}: {e}") from None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        task, metrics = evaluate(args)
    except (PairFileError, ValueError) as e:
        msg = str(e).replace("\n", " ")
        print(f"evaluate.py: error: {msg}", file=sys.stderr)
        return 1
    print(f"{task} re-localization: {args.predictions} vs {args.pairs}")
    print(format_table(metrics))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
