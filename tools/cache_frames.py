#!/usr/bin/env python
"""Fill the decoded-video cache (INPUT.VIDEO.DECODE_CACHE) for the datasets of a config.

Training decodes every video many times; with the cache each video is decoded once at the
config's INPUT.VIDEO.FPS / HEIGHT x WIDTH. Run this before training to keep decoding out of the
training time (the trainer fills missing entries itself otherwise).

    python tools/cache_frames.py --config-file configs/synthreloc/<cfg>.yaml [--workers 2]
"""
import argparse
import multiprocessing
import sys
import time

from detectron2.data import DatasetCatalog

import relocnet  # noqa: F401  (registers the datasets)
from relocnet.data.mapper import DecodedVideoCache
from relocnet.engine import setup_cfg

_cache = None


def _init(directory, fps, size):
    global _cache
    _cache = DecodedVideoCache(directory, fps, size)


def _decode(path):
    _cache.fill(path)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = ap.parse_args(argv)
    cfg = setup_cfg(args, log=False)
    v = cfg.INPUT.VIDEO
    if not v.DECODE_CACHE:
        print("INPUT.VIDEO.DECODE_CACHE is empty: nothing to fill", file=sys.stderr)
        return 2
    videos = sorted({rec[side]["video"] for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)
                     for rec in DatasetCatalog.get(name) for side in ("query", "reference")})
    t0 = time.perf_counter()
    with multiprocessing.Pool(args.workers, _init, (v.DECODE_CACHE, v.FPS, (v.HEIGHT, v.WIDTH))) as pool:
        for i, _ in enumerate(pool.imap_unordered(_decode, videos), 1):
            if i % 100 == 0 or i == len(videos):
                print(f"{i}/{len(videos)} videos decoded, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"decode cache {v.DECODE_CACHE}: {len(videos)} videos at {v.FPS} fps, "
          f"{v.HEIGHT}x{v.WIDTH}, in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
