#!/usr/bin/env python
"""The README's main job on the embedded default (no download).

Renders a small SynthReloc set (seed 0, ``tiny`` preset) under OUTPUT, registers its pair files
with Detectron2, draws one test pair (query keyframes with the query box, reference keyframes
with ground-truth boxes, the ground-truth timeline) to OUTPUT/pair.png, and re-localizes that
pair's query in its reference with the shipped temporal model (`relocnet relocalize`, default
weights from relocnet/model_zoo), writing OUTPUT/relocalize/report.html. The test split's action
classes were never seen in training.

    python tools/demo.py --output output/demo
"""
import argparse
import json
import os
import sys
import time

import cv2
from detectron2.data import DatasetCatalog

from relocnet import cli
from relocnet.data.datasets import EVALUATOR_TYPES, register_reloc_pairs
from relocnet.evaluation.metrics import tiou
from relocnet.data.synthetic.generate import generate
from relocnet.utils.visualize import pair_figure, read_keyframes, span_seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="output/demo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = os.path.join(args.output, "synthreloc")
    if not os.path.exists(os.path.join(root, "manifest.json")):
        generate(root, args.seed, "tiny", workers=1, overwrite=os.path.exists(root))
    name = "demo_synthreloc_spatio_temporal_test"
    register_reloc_pairs(name, os.path.join(root, "pairs", "spatio_temporal_test.json"),
                         task="spatio_temporal", evaluator_type=EVALUATOR_TYPES["spatio_temporal"])
    records = DatasetCatalog.get(name)
    pair = records[0]
    q, r = pair["query"], pair["reference"]
    qs, rs = span_seconds(q["start"], q["end"]), span_seconds(r["start"], r["end"])
    img, _ = pair_figure(pair, read_keyframes(q["video"], qs), read_keyframes(r["video"], rs),
                         query_seconds=qs, reference_seconds=rs)
    out = os.path.join(args.output, "pair.png")
    cv2.imwrite(out, img)
    print(f"SynthReloc (tiny, seed {args.seed}) in {root}: {len(records)} test pairs registered "
          f"as {name}")
    print(f"pair {pair['pair_id']}: query {q['start']:g}-{q['end']:g} s, reference "
          f"{r['start']:g}-{r['end']:g} s, ground truth {pair['segments']}")
    print(f"drawn to {out} in {time.perf_counter() - t0:.1f} s")

    # the main job: find the query's action in the reference with the shipped model
    reloc_dir = os.path.join(args.output, "relocalize")
    code = cli.main(["relocalize", "--query", q["video"], "--query-start", str(q["start"]),
                     "--query-end", str(q["end"]), "--reference", r["video"],
                     "--output", reloc_dir, "--no-progress", "--top-k", "3"])
    if code != 0:
        return code
    with open(os.path.join(reloc_dir, "results.json")) as f:
        results = json.load(f)
    top = results["segments"][0] if results["segments"] else None
    best = max(tiou((top["start"], top["end"]), g) for g in pair["segments"]) if top else 0.0
    print(f"ground truth {pair['segments']}; top-1 tIoU {best:.2f} "
          f"(weights {results['weights']})")
    print(f"report: {os.path.join(reloc_dir, 'report.html')} "
          f"(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
