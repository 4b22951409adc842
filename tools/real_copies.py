#!/usr/bin/env python
"""The real-footage copy set: build it, evaluate a temporal model on it, calibrate its threshold.

    python tools/real_copies.py build [--output output/real_copies]
    python tools/real_copies.py evaluate [--split test] [--config-file C --weights W] [KEY VALUE ...]
    python tools/real_copies.py calibrate --weights W --save W_CALIBRATED [--config-file C]

``build`` renders two small SynthReloc sets as distractor footage and writes the cases
(relocnet/data/real_copies.py). ``evaluate`` prints one line per case and the summary as the last
(JSON) line; ``--weights ""`` evaluates the untrained model (for ChamferHead: frozen-feature
matching). ``calibrate`` evaluates the validation split, picks the match threshold
(relocnet/evaluation/real_copies.py) and writes the weights with it into ``--save``.
Defaults: the shipped temporal model.
"""
import argparse
import json
import os
import subprocess
import sys

import torch

from relocnet.data.real_copies import build_real_copies, load_cases
from relocnet.engine.feature_cache import FeatureCache
from relocnet.engine.inference import load_model
from relocnet.modeling.weights import save_trained_weights
from relocnet.engine.setup import setup_cfg
from relocnet.evaluation.real_copies import choose_threshold, evaluate_cases, summarize
from relocnet.model_zoo import default_model

HERE = os.path.dirname(os.path.abspath(__file__))


def _build(args) -> int:
    dirs = []
    for seed in (0, 1):
        d = os.path.join(args.output, f"render_seed{seed}")
        if not os.path.isdir(d):
            subprocess.run([sys.executable, os.path.join(HERE, "..", "datasets",
                                                         "prepare_synthetic.py"),
                            "--output", d, "--seed", str(seed), "--preset", "tiny"],
                           check=True, stdout=subprocess.DEVNULL)
        dirs.append(d)
    print(build_real_copies(args.output, dirs))
    return 0


def _model(args):
    default = default_model("temporal")
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file or default["config_file"],
                                       opts=args.opts), log=False)
    weights = default["weights"] if args.weights is None else args.weights
    return cfg, load_model(cfg, weights)


def _rows(args, split: str):
    cfg, model = _model(args)
    cases = load_cases(os.path.join(args.output, "cases.json"), split)
    cache = FeatureCache(args.cache_dir or None)
    return model, evaluate_cases(model, cfg, cases, cache)


def _evaluate(args) -> int:
    _, rows = _rows(args, args.split)
    for r in rows:
        top = "-".join(f"{x:g}" for x in r["top1"])
        truth = "-".join(f"{x:g}" for x in r["ground_truth"]) if r["positive"] else "absent"
        tiou = f"tIoU {r['tiou']:.2f}" if r["positive"] else ""
        print(f"{r['source']:18s} {r['transform']:15s} truth {truth:11s} top-1 {top:9s} "
              f"p {r['probability']:.3f} found {r['found']!s:5s} {tiou}")
    print(json.dumps({"split": args.split, **summarize(rows), "rows": rows}))
    return 0


def _calibrate(args) -> int:
    model, rows = _rows(args, "val")
    threshold = choose_threshold(rows)
    model.match_threshold.fill_(threshold)
    save_trained_weights(model, args.save)
    print(json.dumps({"threshold": threshold, "val": summarize(rows, threshold)}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("build", "evaluate", "calibrate"))
    ap.add_argument("--output", default="output/real_copies", help="where the set lives")
    ap.add_argument("--split", default="test", choices=("val", "test", ""))
    ap.add_argument("--config-file", default="")
    ap.add_argument("--weights", default=None, help='checkpoint ("" = untrained)')
    ap.add_argument("--save", default="", help="calibrate: where the calibrated weights go")
    ap.add_argument("--cache-dir", default="", help="feature cache (default: relocnet's)")
    args, args.opts = ap.parse_known_args(argv)  # the rest: config overrides KEY VALUE ...
    torch.set_grad_enabled(False)
    if args.command == "calibrate" and not args.save:
        ap.error("calibrate needs --save")
    return {"build": _build, "evaluate": _evaluate, "calibrate": _calibrate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
