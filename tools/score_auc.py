#!/usr/bin/env python
"""Per-second ROC AUC of a temporal model's match scores on a registered dataset.

A diagnostic below the segment metrics: does the model score matching reference seconds above
non-matching ones at all (0.5 = chance), whatever the decoder's threshold makes of it?

    python tools/score_auc.py --config-file CFG --weights W --dataset synthreloc_temporal_val \\
        [--num-pairs 40] [KEY VALUE ...]

Prints the AUC over all seconds pooled and the mean per-pair AUC (pairs with both kinds of
seconds), then one JSON line, which also holds the pooled AUC of each label ("auc_pooled/LABEL").
"""
import argparse
import json
import sys

import torch
from detectron2.data import DatasetCatalog

import relocnet  # noqa: F401  (registers datasets and models)
from relocnet.data.mapper import RelocPairMapper
from relocnet.engine.inference import load_model
from relocnet.engine.setup import setup_cfg
from relocnet.evaluation.score_auc import score_auc_summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--num-pairs", type=int, default=0, help="first N pairs (0 = all)")
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=args.opts), log=False)
    model = load_model(cfg, args.weights)
    mapper = RelocPairMapper(cfg, is_train=False, task="temporal")
    records = DatasetCatalog.get(args.dataset)
    records = records[: args.num_pairs] if args.num_pairs else records
    out = dict({"dataset": args.dataset}, **score_auc_summary(model, (mapper(r) for r in records)))
    print(f"{args.dataset}: {out['num_pairs']} pairs, per-second AUC {out['auc_pooled']:.3f} "
          f"pooled, {out['auc_mean_per_pair']:.3f} mean per pair")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
