#!/usr/bin/env python
"""Write AVAv2.1-Search pair files from the AVA v2.1 CSVs and val_test.json (upstream rules).

    python datasets/prepare_ava_search.py --csv-dir AVA_CSV_DIR \\
        --val-test ../shared/benchmarks/ava_search/val_test.json \\
        --output ${DETECTRON2_DATASETS:-datasets}/ava_search [--default-size 1280x720]

See datasets/README.md and relocnet/data/ava_search.py for the rules.
"""
import argparse
import sys

from relocnet.data.ava_search import UPSTREAM_SEED, prepare_ava_search
from relocnet.data.datasets import prepare_parser, run_prepare


def _size(text: str):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH (e.g. 1280x720), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return w, h


def main(argv=None) -> int:
    ap = prepare_parser(__doc__.splitlines()[0], seed=UPSTREAM_SEED,
                        video_help="folder of the full AVA videos, ID.mkv / ID.mp4 / ID.webm")
    ap.add_argument("--csv-dir", required=True, help="folder with ava_{train,val}_v2.1.csv")
    ap.add_argument("--val-test", required=True, help="val_test.json ([test_labels, val_labels])")
    ap.add_argument("--default-size", type=_size, default=None, metavar="WxH",
                    help="frame size assumed for videos that are not present")
    ap.add_argument("--time-offset", type=int, default=0,
                    help="seconds subtracted from AVA timestamps (900 for 15-minute cuts "
                         "that start at second 900 of the movie)")
    ap.add_argument("--upstream-dir", default=None,
                    help="folder with upstream's own val.json/test.json to convert instead")
    args = ap.parse_args(argv)
    return run_prepare(
        lambda: prepare_ava_search(
            args.csv_dir, args.val_test, args.output, seed=args.seed, video_dir=args.video_dir,
            default_size=args.default_size, time_offset=args.time_offset,
            upstream_dir=args.upstream_dir, force=args.force, splits=args.splits),
        "{split}: {pairs} pairs, {labels} labels, {videos} videos -> {path} [{status}]")


if __name__ == "__main__":
    sys.exit(main())
