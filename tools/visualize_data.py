#!/usr/bin/env python
"""Draw one query/reference pair to a PNG: query keyframes with the query box, reference
keyframes with ground-truth boxes, and a timeline of the ground-truth segments.

    python tools/visualize_data.py --pairs datasets/synthreloc/pairs/spatio_temporal_val.json \\
        --index 0 --output output/pair.png
    python tools/visualize_data.py --dataset ava_search_val --pair-id VIDEO_PERSON_SECOND \\
        --output output/pair.png
"""
import argparse
import os
import sys

import cv2

from relocnet.data.pairs import load_pairs, resolve_video
from relocnet.utils.visualize import pair_figure, read_keyframes, sample_seconds


def load_records(args):
    """The pairs of --pairs (videos resolved) or of the registered --dataset."""
    if args.pairs:
        data = load_pairs(args.pairs)
        for p in data["pairs"]:
            for side in ("query", "reference"):
                p[side]["video"] = resolve_video(args.pairs, p[side]["video"])
        return data["pairs"]
    from detectron2.data import DatasetCatalog

    from relocnet.data import datasets  # noqa: F401  (registers the benchmarks)

    return DatasetCatalog.get(args.dataset)


def pick(records, args):
    if args.pair_id is not None:
        for rec in records:
            if rec["pair_id"] == args.pair_id:
                return rec
        raise KeyError(f"no pair with pair_id {args.pair_id!r} "
                       f"(first ids: {[r['pair_id'] for r in records[:5]]})")
    if not 0 <= args.index < len(records):
        raise IndexError(f"--index {args.index} is outside 0..{len(records) - 1}")
    return records[args.index]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", help="a pair file")
    src.add_argument("--dataset", help="a registered dataset name, e.g. ava_search_val")
    ap.add_argument("--pair-id", default=None)
    ap.add_argument("--index", type=int, default=0, help="used when --pair-id is not given")
    ap.add_argument("--output", required=True, help="PNG to write")
    ap.add_argument("--max-frames", type=int, default=12,
                    help="at most this many keyframes per row kind (an even sample)")
    ap.add_argument("--tile-height", type=int, default=120)
    ap.add_argument("--columns", type=int, default=6)
    args = ap.parse_args(argv)
    try:
        pair = pick(load_records(args), args)
        q, r = pair["query"], pair["reference"]
        qsec = sample_seconds(q["start"], q["end"], args.max_frames)
        rsec = sample_seconds(r["start"], r["end"], args.max_frames)
        img, _ = pair_figure(pair, read_keyframes(q["video"], qsec),
                             read_keyframes(r["video"], rsec), query_seconds=qsec,
                             reference_seconds=rsec, tile_h=args.tile_height,
                             columns=args.columns)
    except (OSError, ValueError, KeyError, IndexError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if not cv2.imwrite(args.output, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        print(f"error: could not write {args.output}", file=sys.stderr)
        return 1
    print(f"{args.output}: {img.shape[1]}x{img.shape[0]}, pair {pair['pair_id']}, "
          f"{len(qsec)} query and {len(rsec)} reference keyframes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
