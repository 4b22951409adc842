#!/usr/bin/env python
"""The ceiling of the SynthReloc pose-track model: its head and decoder on the true poses.

    python tools/pose_oracle.py PAIR_FILE [...] [--config-file C] [--weights W] [KEY VALUE ...]

For each SynthReloc temporal pair file, the videos' plans are made again from the seed, preset,
tier and split the file records (nothing is decoded), their actors' true poses become PoseTrack
features (relocnet/evaluation/pose_oracle.py), and the model's head and decoder score them.
Prints the temporal metrics per file. Default config and weights: the shipped SynthReloc
pose-track model's (its kernel; ``--weights ''`` for the untrained kernel).
"""
import argparse
import json
import sys

import torch

from relocnet.data.pairs import load_pairs
from relocnet.data.synthetic.plan import PRESETS, plan_split
from relocnet.engine.inference import load_model
from relocnet.engine.setup import setup_cfg
from relocnet.evaluation.metrics import temporal_metrics
from relocnet.evaluation.pose_oracle import oracle_outputs
from relocnet.evaluation.predictions import entries_from_output
from relocnet.model_zoo import default_model, get_config_file

DEFAULT_CONFIG = "synthreloc/relocnet_posetrack_cpu_temporal.yaml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pair_files", nargs="+")
    ap.add_argument("--config-file", default="")
    ap.add_argument("--weights", default=None,
                    help="default: the config's MODEL.WEIGHTS, else the shipped SynthReloc "
                         "temporal model's (its kernel); '' for the untrained kernel")
    args, opts = ap.parse_known_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config_file = args.config_file or get_config_file(DEFAULT_CONFIG)
    cfg = setup_cfg(argparse.Namespace(config_file=config_file, opts=opts), log=False)
    weights = args.weights
    if weights is None:
        weights = cfg.MODEL.WEIGHTS or default_model("synthreloc_temporal")["weights"]
    model = load_model(cfg, weights)
    result = {}
    for path in args.pair_files:
        data = load_pairs(path)
        if data.get("dataset") != "synthreloc" or data.get("task") != "temporal":
            raise SystemExit(f"pose_oracle: {path}: not a SynthReloc temporal pair file")
        plans, _ = plan_split(int(data["seed"]), data["split"], PRESETS[data["preset"]],
                              data.get("tier", "hard"))
        outputs = oracle_outputs(model, {p.name.split("/")[-1]: p for p in plans}, data["pairs"])
        preds = {k: entries_from_output(o, "temporal") for k, o in outputs.items()}
        result[path] = temporal_metrics(data["pairs"], preds)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
