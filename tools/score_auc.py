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

import numpy as np
import torch
from detectron2.data import DatasetCatalog

import relocnet  # noqa: F401  (registers datasets and models)
from relocnet.data.mapper import RelocPairMapper
from relocnet.engine.inference import load_model
from relocnet.engine.setup import setup_cfg


def roc_auc(scores, labels) -> float:
    """Mann-Whitney AUC (ties count half); nan without both classes."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def second_scores(model, pairs):
    """Yield (pair, match scores, match labels) per pair, the scores from ``model`` (in eval
    mode) on the whole reference."""
    with torch.no_grad():
        for pair in pairs:
            yield pair, model([pair])[0]["second_scores"].numpy(), pair["match"].numpy()


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
    all_s, all_y, per_pair, by_label = [], [], [], {}
    for pair, scores, labels in second_scores(model, (mapper(r) for r in records)):
        all_s += list(scores)
        all_y += list(labels)
        s, y = by_label.setdefault(pair.get("label", ""), ([], []))
        s += list(scores)
        y += list(labels)
        auc = roc_auc(scores, labels)
        if auc == auc:
            per_pair.append(auc)
    out = {"dataset": args.dataset, "num_pairs": len(records), "auc_pooled": roc_auc(all_s, all_y),
           "auc_mean_per_pair": float(np.mean(per_pair)) if per_pair else float("nan")}
    out.update({f"auc_pooled/{k}": roc_auc(*v) for k, v in sorted(by_label.items())})
    print(f"{args.dataset}: {len(records)} pairs, per-second AUC {out['auc_pooled']:.3f} pooled, "
          f"{out['auc_mean_per_pair']:.3f} mean per pair")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
