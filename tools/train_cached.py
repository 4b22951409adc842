#!/usr/bin/env python
"""Train the matching head of a frozen-backbone temporal model on cached features.

    python tools/train_cached.py --videos DIR_OR_FILE [...] [--config-file C] \\
        [--queries-per-video 12] [--iterations 600] [--output output/EffL0_cached]
    python tools/train_cached.py --pairs PAIR_FILE [...] --config-file C ...   # labelled pairs
        [--evaluate TEST_PAIR_FILE ...] [--cache-dir output/feature_sets] [--weights W]

``--evaluate`` scores the trained model on temporal pair files from the same cached features
(``predict_cached``: the streamed relocalization's per-second scores, tests/test_pose.py), and on
spatio-temporal ones with a head that locates the matching actor (PoseKernelHead:
``predict_cached_boxes``), and writes their predictions and metrics; ``--iterations 0 --weights W`` evaluates ``W`` only.
``--cache-dir`` keeps each feature set on disk, keyed by the config and the pair files.

Every second of every video and of its augmented query spans goes through the frozen backbone
once (relocnet/engine/cached_training.py); the head then trains on those features. Writes
``model_final.pth`` (the trained parameters only: the frozen ImageNet branches come from the model
zoo when the model is built) and ``metrics.json``. Calibrate its match threshold afterwards with
``tools/real_copies.py calibrate``. Default config: the shipped temporal model's.
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import re
import sys
import time

import torch

from relocnet.data.datasets import VIDEO_EXTENSIONS
from relocnet.data.pairs import load_pairs, resolve_video
from relocnet.data.video_probe import probe_video
from relocnet.engine.cached_training import (build_feature_set, build_pair_feature_set,
                                             predict_cached, predict_cached_boxes, train_head)
from relocnet.evaluation.metrics import spatio_temporal_metrics, temporal_metrics
from relocnet.evaluation.predictions import (entries_from_output, prediction_file_name,
                                             write_predictions)
from relocnet.engine.inference import load_model
from relocnet.modeling.weights import resolve_checkpoint, save_trained_weights
from relocnet.engine.setup import setup_cfg
from relocnet.utils.fileio import atomic_path, write_json_atomic
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


def _pair_file(f: str) -> str:
    """argparse type of ``--pairs`` / ``--evaluate``: an existing file, checked before any feature
    is computed; a config override written after them (they take every word that follows) is
    named as such."""
    if re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", f):
        raise argparse.ArgumentTypeError(f"got the config key {f}: put KEY VALUE overrides before "
                                         f"--pairs / --evaluate, which take every word after them")
    if not os.path.isfile(f):
        raise argparse.ArgumentTypeError(f"{f}: no such pair file")
    return f


def _pair_features(model, cfg, files, cache_dir: str, video_cache=None):
    """build_pair_feature_set, kept under ``cache_dir`` keyed by the config and the files."""
    v = cfg.INPUT.VIDEO
    r = cfg.MODEL.RELOC  # what the features depend on (not the head, decoder or solver)
    parts = [r.SPATIAL_NAME, r.SPATIAL_WEIGHTS, r.POSE, r.MICRO, r.MACRO, r.FEATURES,
             r.EFFICIENTNET, r.MIRROR_AVERAGE, r.POOLER_RESOLUTION, cfg.MODEL.PIXEL_MEAN,
             cfg.MODEL.PIXEL_STD, cfg.INPUT.VIDEO] + [os.path.abspath(f) for f in files]
    if r.POSE.WEIGHTS:  # a pose head retrained in place makes other features
        st = os.stat(resolve_checkpoint(r.POSE.WEIGHTS))
        parts.append((st.st_size, st.st_mtime_ns))
    key = hashlib.sha256(repr(parts).encode())
    path = os.path.join(cache_dir, key.hexdigest()[:20] + ".pt") if cache_dir else ""
    if path and os.path.isfile(path):
        return torch.load(path, weights_only=False)
    data = build_pair_feature_set(model, files, fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                                  video_cache=video_cache)
    if path:
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    return data


def _evaluate(model, cfg, files, cache_dir: str, output: str) -> dict:
    out, videos = {}, {}  # videos: each video's features once for all the files
    for f in files:
        pairs = load_pairs(f)
        data = _pair_features(model, cfg, [f], cache_dir, videos)
        if pairs["task"] == "spatio_temporal":  # the matching actor's box in every second
            infos = {v: probe_video(resolve_video(f, v))
                     for v in {p["reference"]["video"] for p in pairs["pairs"]}}
            sizes = {str(p["pair_id"]): (infos[p["reference"]["video"]].width,
                                         infos[p["reference"]["video"]].height)
                     for p in pairs["pairs"]}
            preds = predict_cached_boxes(model, data, sizes)
        else:
            preds = {k: entries_from_output(o, "temporal")
                     for k, o in predict_cached(model, data).items()}
        write_predictions(os.path.join(output, prediction_file_name(f)), pairs["task"], preds)
        out[f] = (spatio_temporal_metrics if pairs["task"] == "spatio_temporal"
                  else temporal_metrics)(pairs["pairs"], preds)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", nargs="+", help="video files or folders (self-supervised copies)")
    src.add_argument("--pairs", nargs="+", type=_pair_file,
                     help="temporal pair files (labelled pairs)")
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
    ap.add_argument("--weights", default="", help="start from these trained weights")
    ap.add_argument("--evaluate", nargs="*", default=[], type=_pair_file,
                    help="temporal pair files to score")
    ap.add_argument("--cache-dir", default="", help="keep labelled-pair feature sets here")
    args, opts = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    config_file = args.config_file or default_model("temporal")["config_file"]
    cfg = setup_cfg(argparse.Namespace(config_file=config_file, opts=opts), log=False)
    model = load_model(cfg, args.weights)
    v = cfg.INPUT.VIDEO
    t0 = time.perf_counter()
    if args.pairs:
        data = _pair_features(model, cfg, args.pairs, args.cache_dir)
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
               "train_seconds": round(t2 - t1, 1), **losses, "config": config_file}
    for name in ("scale", "offset"):  # ChamferHead's probability calibration
        if hasattr(model.head, name):
            metrics[name] = float(getattr(model.head, name))
    metrics["evaluation"] = _evaluate(model, cfg, args.evaluate, args.cache_dir, args.output)
    write_json_atomic(os.path.join(args.output, "metrics.json"), metrics, indent=1)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
