#!/usr/bin/env python
"""Render SynthReloc, the embedded benchmark: videos + pair files for both tasks and all splits.

    python datasets/prepare_synthetic.py --output datasets/synthreloc --seed 0 --preset small \
        [--tier easy|standard|hard] [--splits test]

Tiers (relocnet/data/synthetic/plan.py:TIERS): ``easy`` one large actor and no motion twins,
``standard`` 1-3 large actors and some twins, ``hard`` 1-4 small actors, many twins, occluders.
Every tier tests on classes never seen in training.

See relocnet/data/synthetic/generate.py for the layout of the output directory.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from relocnet.data.synthetic.generate import generate  # noqa: E402
from relocnet.data.synthetic.plan import PRESETS, SPLITS, TIERS  # noqa: E402
from relocnet.utils.fileio import terminate_as_interrupt  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", required=True, help="dataset directory to create")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--tier", default="hard", choices=sorted(TIERS))
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS),
                    help="render only these splits (e.g. --splits test to evaluate on more seeds)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering videos in parallel")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    args = ap.parse_args(argv)
    try:
        with terminate_as_interrupt():  # SIGTERM removes the half-rendered temp directory
            manifest = generate(args.output, args.seed, args.preset, workers=args.workers,
                                overwrite=args.overwrite, tier=args.tier,
                                splits=args.splits)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"output": os.path.abspath(args.output), "splits": {
        s: {k: v for k, v in d.items() if k != "classes"} for s, d in manifest["splits"].items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
