#!/usr/bin/env python
"""Write ActivityNet-Search pair files from the published split files (upstream protocol).

    python datasets/prepare_activitynet_search.py \\
        --benchmark-dir ../shared/benchmarks/activitynet_search \\
        --output ${DETECTRON2_DATASETS:-datasets}/activitynet_search

See datasets/README.md and relocnet/data/activitynet_search.py for the rules.
"""
import sys

from relocnet.data.activitynet_search import DEFAULT_FPS, UPSTREAM_SEED, \
    prepare_activitynet_search
from relocnet.data.datasets import prepare_parser, run_prepare


def main(argv=None) -> int:
    ap = prepare_parser(__doc__.splitlines()[0], seed=UPSTREAM_SEED,
                        video_help="folder of the videos, v_ID.mp4 (or ID.*, any extension)")
    ap.add_argument("--benchmark-dir", required=True,
                    help="folder with {train,val,test}.json and perm.npy")
    ap.add_argument("--default-fps", type=float, default=DEFAULT_FPS,
                    help="fps assumed for videos that are not present (times then approximate)")
    args = ap.parse_args(argv)
    return run_prepare(
        lambda: prepare_activitynet_search(
            args.benchmark_dir, args.output, seed=args.seed, video_dir=args.video_dir,
            default_fps=args.default_fps, force=args.force, splits=args.splits),
        "{split}: {pairs} pairs, {classes} classes, {videos} videos ({fps_probed} probed) "
        "-> {path} [{status}]")


if __name__ == "__main__":
    sys.exit(main())
