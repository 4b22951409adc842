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
from relocnet.data.video import VideoDecodeError
from relocnet.engine import setup_cfg
from relocnet.utils.fileio import terminate_as_interrupt

_cache = None


def _init(directory, fps, size):
    global _cache
    _cache = DecodedVideoCache(directory, fps, size)


def _decode(path):
    """(path, None) or (path, the one-line problem): one bad video does not stop the others."""
    try:
        _cache.fill(path)
    except (VideoDecodeError, ValueError) as exc:
        return path, " ".join(str(exc).split())
    return path, None


def dataset_videos(names) -> list:
    """Every video of the datasets: both sides of pair records, the file of video-folder ones."""
    videos = set()
    for name in names:
        for rec in DatasetCatalog.get(name):
            if rec.get("self_supervised"):
                videos.add(rec["video"])
            else:
                videos.update(rec[side]["video"] for side in ("query", "reference"))
    return sorted(videos)


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
    videos = dataset_videos((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST))
    t0, failed = time.perf_counter(), []
    with terminate_as_interrupt(), multiprocessing.Pool(
            args.workers, _init, (v.DECODE_CACHE, v.FPS, (v.HEIGHT, v.WIDTH))) as pool:
        for i, (_, problem) in enumerate(pool.imap_unordered(_decode, videos), 1):
            if problem:
                failed.append(problem)
                print(f"cache_frames.py: error: {problem}", file=sys.stderr, flush=True)
            if i % 100 == 0 or i == len(videos):
                print(f"{i}/{len(videos)} videos decoded, {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"decode cache {v.DECODE_CACHE}: {len(videos) - len(failed)} videos at {v.FPS} fps, "
          f"{v.HEIGHT}x{v.WIDTH}, in {time.perf_counter() - t0:.1f} s"
          + (f"; {len(failed)} could not be decoded (above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
