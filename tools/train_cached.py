#!/usr/bin/env python
"""Train the matching head of a frozen-backbone temporal model on cached features.

    python tools/train_cached.py --videos DIR_OR_FILE [...] [--config-file C] \\
        [--queries-per-video 12] [--iterations 600] [--output output/EffL0_cached]
    python tools/train_cached.py --pairs PAIR_FILE [...] --config-file C ...   # labelled pairs

Every second of every video and of its augmented query spans goes through the frozen backbone
once (relocnet/engine/cached_training.py); the head then trains on those features. Writes
``model_final.pth`` (the trained parameters only: the frozen ImageNet branches come from the model
zoo when the model is built) and ``metrics.json``. Calibrate its match threshold afterwards with
``tools/real_copies.py calibrate``. Default config: the shipped temporal model's.
"""
import argparse
import glob
import json
import logging
import os
import sys
import time

import torch

from relocnet.data.datasets import VIDEO_EXTENSIONS
from relocnet.engine.cached_training import build_feature_set, build_pair_feature_set, train_head
from relocnet.engine.inference import load_model
from relocnet.modeling.weights import save_trained_weights
from relocnet.engine.setup import setup_cfg
from relocnet.utils.fileio import write_json_atomic
from relocnet.model_zoo import default_model


def _videos(items):
    out = []
    for item in items:
        if os.path.isdir(item):
            out += sorted(p for p in glob.glob(os.path.join(item, "**", "*"), recursive=True)
                          if p.lower().endswith(tuple(VIDEO_EXTENSIONS)))
        elif os.path.isfile(item):
            out.append(item)
        else:
            raise SystemExit(f"train_cached: {item}: no such file or directory")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs="+", help="video files or folders (self-supervised copies)")
    src.add_argument("--pairs", nargs="+", help="temporal pair files (labelled pairs)")
    ap.add_argument("--negatives", type=int, default=None,
                    help="seconds of other videos per query (default: 16 with --videos, 0 with "
                         "--pairs)")
    ap.add_argument("--config-file", default="")
    ap.add_argument("--queries-per-video", type=int, default=12)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default="output/EffL0_cached")
    args, opts = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    config_file = args.config_file or default_model("temporal")["config_file"]
    cfg = setup_cfg(argparse.Namespace(config_file=config_file, opts=opts), log=False)
    model = load_model(cfg, "")
    v = cfg.INPUT.VIDEO
    t0 = time.perf_counter()
    if args.pairs:
        data = build_pair_feature_set(model, args.pairs, fps=v.FPS, size=(v.HEIGHT, v.WIDTH))
    else:
        data = build_feature_set(model, _videos(args.videos), fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                                 queries_per_video=args.queries_per_video, seed=args.seed)
    negatives = args.negatives if args.negatives is not None else (0 if args.pairs else 16)
    t1 = time.perf_counter()
    losses = train_head(model.head, data, iterations=args.iterations, batch_size=args.batch_size,
                        lr=args.lr, negatives=negatives, seed=args.seed)
    t2 = time.perf_counter()
    save_trained_weights(model, os.path.join(args.output, "model_final.pth"))
    metrics = {"videos": len(data.videos), "queries": len(data.queries),
               "seconds": sum(len(f) for f in data.videos), "feature_seconds": round(t1 - t0, 1),
               "train_seconds": round(t2 - t1, 1), **losses, "config": config_file,
               "scale": float(model.head.scale), "offset": float(model.head.offset)}
    write_json_atomic(os.path.join(args.output, "metrics.json"), metrics, indent=1)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
