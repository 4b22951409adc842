#!/usr/bin/env python
"""Prediction files of two trivial temporal baselines, to put a model's numbers in context.

    python tools/temporal_baselines.py --pairs PAIRS.json --output-dir output/baselines
    python tools/evaluate.py --pairs PAIRS.json --predictions output/baselines/random_segment.json

``whole_reference``: the whole reference span as the segment. ``random_segment``: a 2-6 s segment
at a random whole-second position (seeded).
"""
import argparse
import os
import sys

import numpy as np

from relocnet.data.pairs import load_pairs
from relocnet.evaluation.predictions import write_predictions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--output-dir", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pairs = load_pairs(args.pairs)
    if pairs["task"] != "temporal":
        print(f"{args.pairs}: expected a temporal pair file", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    whole, rand = {}, {}
    for p in pairs["pairs"]:
        s, e = p["reference"]["start"], p["reference"]["end"]
        whole[p["pair_id"]] = [{"segment": [s, e], "score": 1.0}]
        length = int(rng.integers(2, 7))
        a = float(rng.integers(int(s), max(int(s) + 1, int(e) - length + 1)))
        rand[p["pair_id"]] = [{"segment": [a, min(e, a + length)], "score": 1.0}]
    for name, preds in (("whole_reference", whole), ("random_segment", rand)):
        path = os.path.join(args.output_dir, f"{name}.json")
        write_predictions(path, "temporal", preds)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
