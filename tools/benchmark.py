#!/usr/bin/env python
"""relocnet benchmarks; each prints a table, then (last line) the result as one JSON line.

    python tools/benchmark.py correlation [--device cpu|cuda] [--repeat N] [--quick] [--rows-sweep]
    python tools/benchmark.py pipeline --config-file CFG [--weights W]
        [--video PATH | --synthetic-minutes 1,10,60] [--cache-dir DIR] [KEY VALUE ...]
    python tools/benchmark.py archive-scale --hours 1000,10000 [--stats-index IDX] [--queries N]
    python tools/benchmark.py archive --index IDX --queries QUERIES.json --output DIR

See relocnet/utils/benchmark.py (correlation), relocnet/engine/pipeline_benchmark.py
(pipeline), relocnet/search/scale_benchmark.py (archive-scale: coarse search on generated
descriptors) and relocnet/search/archive_benchmark.py (archive: search vs exhaustive
re-localization on a real archive) for what is measured; results and commands are in docs/BENCHMARKS.md.
"""
import argparse
import sys
import warnings

# torch.jit's deprecation notice, raised while detectron2 imports, is noise here.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")

import torch  # noqa: E402

from relocnet.utils.benchmark import emit, run_correlation_benchmark  # noqa: E402


def _size(text: str):
    h, w = (int(x) for x in text.lower().split("x"))
    return h, w


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("correlation", help="eq. 15 correlation vs GEMM and alternatives")
    c.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    c.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (min kept)")
    c.add_argument("--quick", action="store_true", help="tiny shapes (tests)")
    c.add_argument("--slow-max-pairs", type=int, default=16,
                   help="the slow implementations run on at most this many pairs, scaled to P")
    c.add_argument("--rows-sweep", action="store_true",
                   help="also time the fast path with every rows-per-block choice")
    p = sub.add_parser("pipeline", help="decode / features / matching rates and peak memory")
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default="", help="checkpoint (default: seeded random weights)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--video", default="", help="a reference video to use instead of synthetic")
    src.add_argument("--synthetic-minutes", default="1,10,60",
                     help="lengths of the synthetic references, minutes (comma-separated)")
    p.add_argument("--cache-dir", default="output/benchmark_cache",
                   help="synthetic videos and the feature cache go here")
    p.add_argument("--stage-seconds", type=int, default=60,
                   help="seconds of the shortest reference used by the per-stage timings")
    p.add_argument("--video-fps", type=int, default=24, help="frame rate of the synthetic videos")
    p.add_argument("--video-size", type=_size, default=(240, 320),
                   help="HxW of the synthetic videos")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    s = sub.add_parser("archive-scale", help="coarse search on 1,000s of hours of generated "
                       "descriptors: time, memory, recall")
    s.add_argument("--hours", default="1000,10000", help="archive sizes (comma-separated)")
    s.add_argument("--stats-index", default="",
                   help="an index whose descriptors shape the generated ones (default isotropic)")
    s.add_argument("--queries", type=int, default=25)
    s.add_argument("--search-threads", type=int, default=2, help="FAISS threads while searching")
    s.add_argument("--build-threads", type=int, default=1, help="FAISS threads while building")
    from relocnet.search.archive_benchmark import add_arguments

    add_arguments(sub.add_parser("archive", help="archive search vs exhaustive re-localization"))
    return ap.parse_args(argv)


def _archive_scale(args):
    import faiss
    import numpy as np

    from relocnet.search.catalog import Catalog
    from relocnet.search.scale_benchmark import run_scale_benchmark

    faiss.omp_set_num_threads(args.build_threads)
    real = None
    if args.stats_index:
        catalog = Catalog(f"{args.stats_index}/catalog.sqlite")
        real = np.concatenate([r.array() for r in catalog.rows() if r.error is None])
    return run_scale_benchmark([float(h) for h in args.hours.split(",")], real=real,
                               queries=args.queries, threads=args.search_threads,
                               build_threads=args.build_threads,
                               log=lambda m: print(m, file=sys.stderr, flush=True))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == "correlation":
        text, result = run_correlation_benchmark(device=args.device, repeat=args.repeat,
                                                 quick=args.quick,
                                                 slow_max_pairs=args.slow_max_pairs,
                                                 rows_sweep=args.rows_sweep)
    elif args.command == "archive-scale":
        text, result = _archive_scale(args)
    elif args.command == "archive":
        from relocnet.search.archive_benchmark import run_archive_benchmark

        text, result = run_archive_benchmark(args)
    else:
        from relocnet.engine.pipeline_benchmark import run_pipeline_benchmark

        minutes = [float(m) for m in args.synthetic_minutes.split(",") if m.strip()]
        text, result = run_pipeline_benchmark(
            config_file=args.config_file, weights=args.weights, opts=args.opts, video=args.video,
            minutes=minutes, cache_dir=args.cache_dir, stage_seconds=args.stage_seconds,
            video_fps=args.video_fps, video_size=args.video_size)
    emit(text, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
