#!/usr/bin/env python
"""Learnability check: do a model's features recognize SynthReloc's training classes?

    python tools/learnability.py [--config-file C] [--weights W] [--classes hand|procedural]
        [--per-class 10] [--seconds 4] [--seed 0 [1 ...]] [--output result.json] [KEY VALUE ...]

Clips of one actor doing each training class (each clip its own actor, background and camera;
relocnet/evaluation/learnability.py) go through the model; a linear probe on their per-second
features is trained on 80 % of each class's clips and tested on the others. One probe per feature
scale (spatial, macro, micro, as the config concatenates them: mean and max over locations), one
on all, and one (``head``) on what the matching head reads from a second
(``RelocHead.second_features``: for the pose-track model, the actor's pose in every frame and its
speed), and (``head_match``) the matching head itself as a nearest-neighbour classifier: each
held-out second takes the class of the training clip it matches best, the head's own logit with
the clip as the query (``match_accuracy``; nothing fitted). ``--classes hand``:
the 16 hand-designed training classes; ``procedural``: the first 16 procedural ones. Nothing is
read from disk but the model. Default config: the SynthReloc temporal model's.

Several ``--seed``s repeat the check, each on its own clips and split (``seeds``: each seed's
result), and ``mean`` gives every accuracy's mean over the seeds and ``head_match_95``, the
interval of the head's mean accuracy with each seed's held-out clips resampled on their own.
"""
import argparse
import json
import sys

import numpy as np
import torch

from relocnet.data.synthetic.actions import classes
from relocnet.data.synthetic.plan import plan_clips
from relocnet.engine.cached_training import second_rois
from relocnet.engine.inference import load_model
from relocnet.engine.setup import setup_cfg
from relocnet.evaluation.learnability import (clip_interval, match_accuracy, pool_seconds,
                                              probe_accuracy, render_subclips)
from relocnet.evaluation.pose_oracle import true_pose_track
from relocnet.model_zoo import get_config_file
from relocnet.utils.fileio import write_json_atomic

DEFAULT_CONFIG = "synthreloc/relocnet_posetrack_cpu_temporal.yaml"


def _scales(model) -> dict:
    """Channel ranges of each feature scale in the concatenated features (eq. 10's order)."""
    bb = model.backbone
    widths = {"spatial": bb.spatial.output_shape()["res4"].channels,
              "macro": bb.macro.out_channels if bb.macro is not None else 0,
              "micro": bb.micro.out_channels if bb.micro is not None else 0}
    out, start = {}, 0
    for name in bb.features:
        out[name] = (start, start + widths[name])
        start += widths[name]
    return out


def _check(model, cfg, names, args, seed: int) -> dict:
    """One check: clips of ``seed``, every probe's held-out accuracy."""
    v = cfg.INPUT.VIDEO
    feats, head_feats, clip_rois, labels, groups = [], [], [], [], []
    for i, plan in enumerate(plan_clips(seed, names, args.per_class, args.seconds)):
        if args.true_poses:
            rois = true_pose_track(plan, v.FPS)
        else:
            rois = second_rois(model, render_subclips(plan, v.FPS, (v.HEIGHT, v.WIDTH)))
        clip_rois.append(rois)
        feats.append(pool_seconds(rois))
        with torch.no_grad():
            head_feats.append(model.head.second_features(rois))
        labels += [plan.actors[0].segments[0].name] * len(rois)
        groups += [i] * len(rois)
    x = torch.cat(feats)
    half = x.shape[1] // 2  # pool_seconds: mean then max of the same channels
    result = {}
    scales = {} if args.true_poses else {**_scales(model), "all": (0, half)}
    for name, (a, b) in scales.items():
        cols = list(range(a, b)) + list(range(half + a, half + b))
        result[name] = probe_accuracy(x[:, cols], labels, groups, seed=seed)
    result["head"] = probe_accuracy(torch.cat(head_feats), labels, groups, seed=seed)
    result["head_match"] = match_accuracy(model.head, clip_rois, labels, groups, seed=seed)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", default="")
    ap.add_argument("--weights", default=None, help="default: the config's MODEL.WEIGHTS")
    ap.add_argument("--classes", choices=("hand", "procedural"), default="hand")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--seed", type=int, nargs="+", default=[0],
                    help="clip seeds; several repeat the check on new clips and report the mean")
    ap.add_argument("--output", default="", help="also write the result to this JSON file")
    ap.add_argument("--true-poses", action="store_true",
                    help="the ceiling: the head's features of the renderer's true poses "
                         "(pose-track models; relocnet/evaluation/pose_oracle.py), no pixels")
    args, opts = ap.parse_known_args(argv)
    if len(set(args.seed)) != len(args.seed):
        ap.error(f"--seed {' '.join(map(str, args.seed))}: a seed given twice")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config_file = args.config_file or get_config_file(DEFAULT_CONFIG)
    cfg = setup_cfg(argparse.Namespace(config_file=config_file, opts=opts), log=False)
    model = load_model(cfg, cfg.MODEL.WEIGHTS if args.weights is None else args.weights)
    names = [a.name for a in classes("train", procedural=args.classes == "procedural")][:16]
    result = {"config": config_file, "classes": args.classes, "names": names,
              "clips_per_class": args.per_class, "seconds": args.seconds,
              "true_poses": args.true_poses}
    runs = [_check(model, cfg, names, args, seed) for seed in args.seed]
    if len(runs) == 1:
        result.update(runs[0])
    else:
        result["seeds"] = dict(zip(map(str, args.seed), runs))
        result["mean"] = {k: float(np.mean([r[k]["accuracy"] for r in runs]))
                          for k in runs[0] if isinstance(runs[0][k], dict)}
        result["mean"]["head_match_95"] = clip_interval([r["head_match"]["clips"] for r in runs])
        result["mean"]["head_match_per_class"] = {
            n: float(np.mean([r["head_match"]["per_class"][n]["accuracy"] for r in runs]))
            for n in runs[0]["head_match"]["per_class"]}
    print(json.dumps(result, indent=1))
    if args.output:
        write_json_atomic(args.output, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
