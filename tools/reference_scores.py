#!/usr/bin/env python
"""Per-second scores of the shipped models on fixed inputs, for tests/test_shipped_scores.py.

Inputs: the demo's real-footage copy (``bikes.mp4`` [4, 7) s, ``crop_rotate``, seed 0; kept in
tests/data/copy_bikes_crop_rotate.mp4, written by OpenCV 5.0) and the 5 held-out (test, then
validation) pairs of a tiny SynthReloc (seed 0) of each task. The temporal model re-localizes
the temporal pairs and the copy, the spatio-temporal model the spatio-temporal pairs, each both
through ``model(...)`` on the mapper's inputs and through the streamed ``relocalize`` of
``relocnet relocalize``. Writes one array per (model, input, path) to an ``.npz``:

    python tools/reference_scores.py --output tests/data/shipped_scores.npz
"""
import argparse
import os
import sys
import tempfile

import numpy as np

from relocnet.model_zoo.scores import shipped_scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True)
    ap.add_argument("--copy", default="tests/data/copy_bikes_crop_rotate.mp4",
                    help="the demo's copy of bikes.mp4 [4, 7) s (crop_rotate, seed 0); '' writes "
                         "a new one under --workdir")
    ap.add_argument("--workdir", default="", help="where a new copy is written (default: temp)")
    ap.add_argument("--synthreloc", default="tests/data/synthreloc_tiny",
                    help="a tiny SynthReloc (seed 0): its test and val pairs and videos")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scores = shipped_scores(args.workdir or tmp, args.synthreloc, args.copy)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, **scores)
    for k, v in sorted(scores.items()):
        print(f"{k}: {np.array2string(v, precision=3, max_line_width=200)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
