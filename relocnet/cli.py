"""The `relocnet` command: `relocnet relocalize` finds a query clip's action in a reference video;
`relocnet index` / `relocnet search` find a query clip in a whole archive (relocnet/search/).

    relocnet index --videos DIR|LIST --index IDX [--config-file C --weights W]
        [--num-gpus N --num-machines M --machine-rank R --dist-url URL]
    relocnet search --query Q.mp4 [--query-start S --query-end E] --index IDX [--top-k K]
        --output DIR
    relocnet relocalize --query Q.mp4 [--query-start S --query-end E]
        [--query-box x1,y1,x2,y2 ... | --query-boxes FILE] --reference R.mp4
        [--config-file C --weights W] [--top-k K] [--cache-dir DIR | --no-cache] --output DIR
        [KEY VALUE ...]   (config overrides, as in detectron2's tools)

Without boxes: temporal mode (a RelocTemporal config); with boxes: spatio-temporal (RelocRCNN, or
RelocPoseTrack: configs/synthreloc/relocnet_posetrack_cpu_st.yaml).
Results go to DIR only when everything succeeded: they are written to DIR.tmp-* first, then
renamed; DIR must be new, empty or an earlier result (relocnet/engine/output_dir.py), and one run
at a time may write it. SIGTERM and Ctrl-C remove the temp directory. Problems print one line
``relocnet: error: ...`` on stderr and exit non-zero.
"""
import argparse
import json
import logging
import os
import sys
import time
import warnings
from typing import Dict, List, Optional

# The shipped defaults per mode, in one place (paths relative to the repository root).
ARCHITECTURES = {"temporal": "RelocTemporal", "spatio_temporal": "RelocRCNN or RelocPoseTrack"}


class CLIError(Exception):
    """A problem with the command line or its files; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CLIError(message)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="relocnet", description="Video action re-localization (relocnet).")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("relocalize", help="find a query clip's action in a reference video")
    p.add_argument("--query", required=True, help="query video")
    p.add_argument("--query-start", type=float, default=None, help="query start (s, default 0)")
    p.add_argument("--query-end", type=float, default=None, help="query end (s, default: its end)")
    p.add_argument("--query-box", action="append", default=[], metavar="x1,y1,x2,y2",
                   help="a query object's box (query video pixels); repeat for several objects")
    p.add_argument("--query-boxes", default="",
                   help='JSON {second: [x1,y1,x2,y2] or [[x1,y1,x2,y2], ...]} per query second')
    p.add_argument("--reference", required=True, help="reference video (any length)")
    p.add_argument("--config-file", default="", help="default: the shipped model's (relocnet/model_zoo)")
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped model's)")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="run without trained weights (tests only: the results mean nothing)")
    p.add_argument("--top-k", type=int, default=None, help="segments to report (DECODER.TOP_K)")
    p.add_argument("--cache-dir", default="",
                   help="feature cache (default $RELOCNET_CACHE or ~/.cache/relocnet/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--output", required=True, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ... (anywhere on the line)")
    _add_index_parser(sub)
    _add_search_parser(sub)
    return ap


def _add_model_args(p) -> None:
    p.add_argument("--config-file", default="", help="default: the shipped temporal model's")
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped model's)")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="run without trained weights (tests only: the results mean nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ... (anywhere on the line)")


def _add_index_parser(sub) -> None:
    p = sub.add_parser("index", help="index every second of an archive of videos (FAISS)")
    p.add_argument("--videos", required=True, help="a directory (searched recursively) or a "
                   "file listing one video path per line; the index mirrors it")
    p.add_argument("--index", required=True, help="index directory (created or updated)")
    p.add_argument("--overlap", type=int, default=0,
                   help="window overlap (s) for the descriptors (default 0: each second once)")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    p.add_argument("--num-machines", type=int, default=1)
    p.add_argument("--machine-rank", type=int, default=0)
    p.add_argument("--dist-url", default="auto", help="torch.distributed init URL "
                   "(auto: a free local port, one machine only)")
    _add_model_args(p)


def _add_search_parser(sub) -> None:
    p = sub.add_parser("search", help="find a query clip in an indexed archive")
    p.add_argument("--query", required=True, help="query video")
    p.add_argument("--query-start", type=float, default=None, help="query start (s, default 0)")
    p.add_argument("--query-end", type=float, default=None, help="query end (s, default: its end)")
    p.add_argument("--index", required=True, help="index directory (relocnet index)")
    p.add_argument("--top-k", type=int, default=10, help="hits to report")
    p.add_argument("--candidates", type=int, default=5,
                   help="coarse candidates re-localized by the fine stage")
    p.add_argument("--neighbors", type=int, default=100,
                   help="nearest indexed seconds per query second")
    p.add_argument("--margin", type=int, default=3,
                   help="seconds added on both sides of a candidate for the fine stage")
    p.add_argument("--no-fine", action="store_true", help="coarse stage only")
    p.add_argument("--output", required=True, help="output directory")
    _add_model_args(p)


def parse_args(argv: List[str]) -> argparse.Namespace:
    """Options may come before, between or after the KEY VALUE config overrides."""
    args, extra = build_parser().parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("--")]
    if unknown:
        raise CLIError(f"unrecognized arguments: {' '.join(unknown)}")
    args.opts = list(args.opts or []) + extra
    return args


# ----------------------------------------------------------------------------- arguments


def _parse_box(text: str) -> List[float]:
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise CLIError(f"--query-box {text!r}: expected four numbers x1,y1,x2,y2")
    return box


def _load_boxes_file(path: str) -> Dict[int, List[List[float]]]:
    """{second: [box, ...]} from a --query-boxes file, checked for shape (not for frame size)."""
    if not os.path.isfile(path):
        raise CLIError(f"--query-boxes file {path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CLIError(f"--query-boxes file {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise CLIError(f"--query-boxes file {path}: expected a non-empty JSON object "
                       "{second: box or [boxes]}")
    out = {}
    for key, value in data.items():
        try:
            second = int(key)
        except ValueError:
            raise CLIError(f"--query-boxes file {path}: key {key!r} is not an integer second")
        boxes = value if value and isinstance(value[0], list) else [value]
        ok = all(isinstance(b, list) and len(b) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in b) for b in boxes)
        if not isinstance(value, list) or not ok:
            raise CLIError(f"--query-boxes file {path}: second {key}: expected [x1, y1, x2, y2] "
                           f"or a list of such boxes, got {json.dumps(value)[:80]}")
        out[second] = [[float(v) for v in b] for b in boxes]
    return out


def _resolve_defaults(args) -> str:
    """Fill in config/weights for the mode; returns the mode."""
    if args.query_box and args.query_boxes:
        raise CLIError("give either --query-box or --query-boxes, not both")
    mode = "spatio_temporal" if (args.query_box or args.query_boxes) else "temporal"
    if not args.config_file or args.weights is None:
        from .model_zoo import default_model

        default = default_model(mode)
        if not args.config_file:
            args.config_file = default["config_file"]
        if args.weights is None:
            args.weights = default["weights"]
    for what, path in (("query video", args.query), ("reference video", args.reference),
                       ("config file", args.config_file), ("weights", args.weights)):
        if path and not os.path.isfile(path):
            problem = ("is a directory, not a file" if os.path.isdir(path) else
                       "not a regular file" if os.path.exists(path) else "file not found")
            raise CLIError(f"{what} {path}: {problem}")
    if not args.no_cache:
        from .engine.feature_cache import cache_max_bytes

        cache_max_bytes()  # a bad $RELOCNET_CACHE_MAX_GB fails here, before any work
    if not args.weights and not args.allow_random_weights:
        raise CLIError("no trained weights: pass --weights W (--allow-random-weights runs an "
                       "untrained model, whose results mean nothing)")
    if args.top_k is not None and args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
    return mode


def _config(args, mode: str):
    from .engine.setup import setup_cfg

    opts = list(args.opts or [])
    if args.top_k is not None:
        opts += ["MODEL.RELOC.DECODER.TOP_K", str(args.top_k)]
    try:
        cfg = setup_cfg(argparse.Namespace(config_file=args.config_file, opts=opts),
                        log=False)
    except Exception as exc:  # yaml / yacs raise many types for a bad config
        raise CLIError(f"config {args.config_file}: {type(exc).__name__}: {exc}") from exc
    from .modeling.meta_arch import model_task

    arch = cfg.MODEL.META_ARCHITECTURE
    if model_task(cfg) != mode:
        need = "query boxes were given" if mode == "spatio_temporal" else "no query box was given"
        raise CLIError(f"config {args.config_file} builds {arch}, but {need}: {mode.replace('_', '-')}"
                       f" mode needs a {ARCHITECTURES[mode]} config")
    return cfg


# ----------------------------------------------------------------------------- the command


def relocalize_command(args) -> int:
    from .engine.output_dir import claim_output, publish
    from .engine.runner import run_relocalization

    t0 = time.perf_counter()
    mode = _resolve_defaults(args)
    boxes = None
    if args.query_boxes:
        boxes = _load_boxes_file(args.query_boxes)
    elif args.query_box:
        first = int(args.query_start or 0)
        boxes = {first: [_parse_box(b) for b in args.query_box]}
    cfg = _config(args, mode)
    with claim_output(args.output) as tmp:
        summary = run_relocalization(args, cfg, mode, boxes, tmp, t0)
        publish(tmp, args.output)
    out = os.path.abspath(args.output)
    for line in summary:
        print(line)
    print(f"report: {os.path.join(out, 'report.html')}")
    return 0


def _model_files(args, defaults: Optional[Dict[str, str]] = None) -> None:
    """Fill in --config-file/--weights (from ``defaults``, else the shipped temporal model) and
    check that the files exist."""
    from .model_zoo import default_model

    defaults = defaults or default_model("temporal")
    if not args.config_file:
        args.config_file = defaults["config_file"]
    if args.weights is None:
        args.weights = defaults["weights"]
    for what, path in (("config file", args.config_file), ("weights", args.weights)):
        if path and not os.path.isfile(path):
            raise CLIError(f"{what} {path}: file not found")
    if not args.weights and not args.allow_random_weights:
        raise CLIError("no trained weights: pass --weights W (--allow-random-weights runs an "
                       "untrained model, whose results mean nothing)")


def _temporal_cfg(args):
    """The RelocTemporal config of --config-file and the overrides (no decoder top-k)."""
    return _config(argparse.Namespace(config_file=args.config_file, opts=args.opts, top_k=None),
                   "temporal")


def index_command(args) -> int:
    from detectron2.engine import launch

    from .search.index_job import index_main

    from .search.indexer import list_videos

    try:
        args.video_list = list_videos(args.videos)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    _model_files(args)
    launch(index_main, args.num_gpus, num_machines=args.num_machines,
           machine_rank=args.machine_rank, dist_url=args.dist_url,
           args=(args, _temporal_cfg(args), {}))  # rank 0 prints the summary
    return 0


def search_command(args) -> int:
    from .engine.output_dir import claim_output, publish
    from .search.search_job import run_search
    from .search.snapshot import load_snapshot

    t0 = time.perf_counter()
    if args.top_k < 1 or args.candidates < 1 or args.neighbors < 1:
        raise CLIError("--top-k, --candidates and --neighbors must be >= 1")
    if not os.path.isfile(args.query):
        raise CLIError(f"query video {args.query}: file not found")
    snapshot = load_snapshot(args.index)
    meta = snapshot.meta
    _model_files(args, {"config_file": meta["config_file"], "weights": meta["weights"]}
                 if os.path.isfile(meta.get("config_file", "")) else None)
    cfg = _temporal_cfg(args)
    with claim_output(args.output) as tmp:
        summary = run_search(args, cfg, snapshot, tmp, t0)
        publish(tmp, args.output)
    for line in summary:
        print(line)
    print(f"report: {os.path.join(os.path.abspath(args.output), 'report.html')}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the `relocnet` console script; returns the exit code."""
    from .data.video import VideoDecodeError
    from .engine.feature_cache import CacheError
    from .engine.inference import InputError, WeightsError
    from .engine.output_dir import OutputDirError
    from .search.catalog import CatalogError
    from .search.snapshot import SnapshotError
    from .utils.fileio import Terminated, terminate_as_interrupt

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    # third-party notices that say nothing to a user of the command
    warnings.filterwarnings("ignore", message=r"torch\.meshgrid", category=UserWarning)
    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
    try:
        with terminate_as_interrupt():  # SIGTERM cleans up like Ctrl-C: no temp dir is left
            args = parse_args(argv)
            command = {"relocalize": relocalize_command, "index": index_command,
                       "search": search_command}[args.command]
            return command(args)
    except (CLIError, InputError, WeightsError, VideoDecodeError, OutputDirError, CacheError,
            OSError, CatalogError, SnapshotError) as exc:
        _error(str(exc))
        return 2 if isinstance(exc, CLIError) else 1
    except KeyboardInterrupt as exc:
        _error(str(exc) if isinstance(exc, Terminated) else "interrupted")
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if debug:
            raise
        _error(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
        return 1


def _error(message: str) -> None:
    print("relocnet: error: " + " ".join(message.split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
