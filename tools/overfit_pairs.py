#!/usr/bin/env python
"""Sanity check of a temporal config: can the model fit a handful of training pairs?

Trains from scratch on the first N pairs of a dataset (the Trainer's optimizer, mapper and
augmentation, batches of SOLVER.IMS_PER_BATCH) and prints the losses, then the per-second ROC AUC
of the match scores on those same pairs at inference (whole references, eval mode) every
--eval-period iterations. A model that cannot fit 8 pairs has a bug; one that fits them but stays
at chance on held-out pairs is limited by data, schedule or capacity.

    python tools/overfit_pairs.py --config-file CFG [--dataset synthreloc_temporal_train]
        [--num-pairs 8] [--iters 200] [--eval-period 100] [KEY VALUE ...]
"""
import argparse
import sys
import time

import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

import relocnet  # noqa: F401  (registers datasets and models)
from relocnet.data.mapper import RelocPairMapper
from relocnet.engine.setup import setup_cfg
from relocnet.engine.trainer import Trainer, index_labels
from relocnet.modeling.meta_arch import model_task
from relocnet.evaluation.score_auc import roc_auc, second_scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--dataset", default="synthreloc_temporal_train")
    ap.add_argument("--num-pairs", type=int, default=8)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--eval-period", type=int, default=100)
    ap.add_argument("opts", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=args.opts), log=False)
    if model_task(cfg) != "temporal":
        raise SystemExit("overfit_pairs.py checks temporal configs (MODEL.META_ARCHITECTURE "
                         f"RelocTemporal), got {cfg.MODEL.META_ARCHITECTURE}")
    torch.manual_seed(cfg.SEED if cfg.SEED >= 0 else 0)
    model = build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    records = DatasetCatalog.get(args.dataset)[: args.num_pairs]
    if cfg.MODEL.RELOC.AUX_CLASSES > 0:
        index_labels(records, cfg.MODEL.RELOC.AUX_CLASSES)
    train_mapper = RelocPairMapper(cfg, is_train=True, task="temporal")
    fixed = [RelocPairMapper(cfg, is_train=False, task="temporal")(r) for r in records]
    batch_size = cfg.SOLVER.IMS_PER_BATCH

    def evaluate(step: int) -> None:
        model.eval()
        scores, labels = [], []
        for _, s, y in second_scores(model, fixed):
            scores += list(s)
            labels += list(y)
        model.train()
        auc = roc_auc(scores, labels)
        print(f"iter {step}: per-second AUC on the {len(fixed)} pairs {auc:.3f}", flush=True)

    model.train()
    start = time.perf_counter()
    with EventStorage(0):
        for it in range(1, args.iters + 1):
            batch = [train_mapper(records[(it * batch_size + k) % len(records)])
                     for k in range(batch_size)]
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if it % 25 == 0 or it == 1:
                shown = " ".join(f"{k} {float(v):.3f}" for k, v in losses.items())
                print(f"iter {it}: {shown} ({time.perf_counter() - start:.0f} s)", flush=True)
            if it % args.eval_period == 0 or it == args.iters:
                evaluate(it)
    return 0


if __name__ == "__main__":
    sys.exit(main())
