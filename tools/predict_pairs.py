#!/usr/bin/env python
"""Predict every pair of pair files by the path of ``relocnet relocalize``, and score them.

    python tools/predict_pairs.py --config-file C [--weights W] --output DIR \\
        [--cache-dir D] [KEY VALUE ...] --pairs P.json [P2.json ...]

Each pair's query span and, for spatio-temporal pairs, the pair's query boxes go through
``prepare_query``; its reference is streamed by ``relocalize`` (relocnet/engine/inference.py
``predict_pair_file``), as ``relocnet relocalize --query-boxes`` does for one pair: the numbers
are those of the command users run, not of a cached shortcut (tools/train_cached.py --evaluate
gives the pose-track model full-frame queries). Writes ``DIR/predictions_<dataset>_<file>.json``
(tools/evaluate.py scores them again) and ``DIR/metrics.json``; prints one line per file. Config
overrides (KEY VALUE) go before ``--pairs``.
"""
import argparse
import json
import logging
import os
import sys
import time
import warnings

# torch.jit's deprecation notice, raised while detectron2 imports, is noise on a CLI's stderr.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)

from tqdm import tqdm  # noqa: E402

from relocnet.data.pairs import PairFileError, load_pairs  # noqa: E402
from relocnet.data.video import VideoDecodeError  # noqa: E402
from relocnet.engine.feature_cache import FeatureCache  # noqa: E402
from relocnet.engine.inference import (InputError, WeightsError, check_pair_task,  # noqa: E402
                                       load_model, predict_pair_file)
from relocnet.engine.setup import setup_cfg  # noqa: E402
from relocnet.evaluation.metrics import spatio_temporal_metrics, temporal_metrics  # noqa: E402
from relocnet.evaluation.predictions import (prediction_file_name,  # noqa: E402
                                             write_predictions)
from relocnet.utils.fileio import write_json_atomic  # noqa: E402


def main(argv=None) -> int:
    try:
        return run(argv)
    except (PairFileError, InputError, WeightsError, VideoDecodeError, OSError) as exc:
        print("predict_pairs: " + " ".join(str(exc).split()), file=sys.stderr)
        return 1


def run(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--weights", default=None, help="default: the config's MODEL.WEIGHTS")
    ap.add_argument("--output", required=True, help="directory for predictions and metrics")
    ap.add_argument("--cache-dir", default="", help="feature cache (default: none)")
    ap.add_argument("--pairs", nargs="+", required=True)
    args, opts = ap.parse_known_args(argv)  # the rest: config overrides KEY VALUE
    files = {f: load_pairs(f) for f in args.pairs}  # every file checked before any work
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=opts), log=False)
    weights = cfg.MODEL.WEIGHTS if args.weights is None else args.weights
    if not weights:
        raise InputError(f"no weights: {args.config_file} sets no MODEL.WEIGHTS; pass --weights "
                         "(an untrained model's numbers mean nothing)")
    model = load_model(cfg, weights)
    for f, data in files.items():
        check_pair_task(data, f, model, cfg)
    cache = FeatureCache(args.cache_dir) if args.cache_dir else None
    os.makedirs(args.output, exist_ok=True)
    metrics = {}
    for f, data in files.items():
        t0 = time.perf_counter()
        with tqdm(total=len(data["pairs"]), desc=os.path.basename(f), unit="pair",
                  file=sys.stderr) as bar:
            preds = predict_pair_file(model, cfg, f, cache=cache, progress=bar.update)
        write_predictions(os.path.join(args.output, prediction_file_name(f)), data["task"],
                          preds)
        score = spatio_temporal_metrics if data["task"] == "spatio_temporal" else temporal_metrics
        metrics[f] = score(data["pairs"], preds)
        metrics[f]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f, json.dumps({k: round(v, 2) for k, v in metrics[f].items()
                             if isinstance(v, float) and "/" not in k}), flush=True)
    write_json_atomic(os.path.join(args.output, "metrics.json"), metrics, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
