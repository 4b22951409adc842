"""The job behind `relocnet search`: query -> coarse-to-fine search -> results.json, report.html.

Writes into ``out_dir`` (the CLI's temp directory, published only on success); see
relocnet/cli.py for arguments and error handling.
"""
import os
import time
from typing import Any, Dict, List

from .. import __version__
from ..data.pairs import write_json_atomic
from ..engine.feature_cache import model_digest
from ..engine.inference import InputError, load_model, prepare_query
from .archive_search import search_archive
from .report import write_hit_media, write_search_html
from .snapshot import Snapshot

__all__ = ["run_search"]


def run_search(args, cfg, snapshot: Snapshot, out_dir: str, t0: float) -> List[str]:
    """Search the query of ``args`` in ``snapshot``; returns the summary lines to print."""
    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    query, _, qseconds = prepare_query(
        args.query, fps=v.FPS, size=size, query_seconds=v.QUERY_SECONDS,
        min_seconds=v.MIN_QUERY_SECONDS, start=args.query_start, end=args.query_end)
    model = load_model(cfg, args.weights)
    if model_digest(cfg, model) != snapshot.meta.get("model"):
        raise InputError(f"index {args.index} was built with another model or config than "
                         f"{args.config_file} + {args.weights}; search with the index's model "
                         "(omit --config-file/--weights) or re-index")
    notes: List[str] = []
    hits, timings = search_archive(
        model, query, snapshot, fps=v.FPS, size=size, neighbors=args.neighbors,
        candidates=max(args.candidates, args.top_k if args.no_fine else 0),
        margin=args.margin, fine=not args.no_fine, notes=notes)
    rows: List[Dict[str, Any]] = [dict(h.to_json(), rank=k + 1)
                                  for k, h in enumerate(hits[: args.top_k])]
    t = time.perf_counter()
    if not args.no_fine:
        write_hit_media(out_dir, rows)
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    meta = snapshot.meta
    results = {
        "relocnet_version": __version__,
        "query": {"video": os.path.abspath(args.query), "seconds": qseconds,
                  "start": float(qseconds[0] if args.query_start is None else args.query_start),
                  "end": float(qseconds[-1] + 1 if args.query_end is None else args.query_end)},
        "index": {"path": os.path.abspath(args.index), "videos": len(meta["videos"]),
                  "hours": meta["hours"], "factory": meta["description"], "nprobe": meta["nprobe"]},
        "search": {"neighbors": args.neighbors, "candidates": args.candidates,
                   "margin": args.margin, "fine": not args.no_fine,
                   "match_threshold": float(getattr(model, "match_threshold", 0.5))},
        "config": os.path.abspath(args.config_file), "weights": args.weights or None,
        "hits": rows, "notes": notes,
        "timings": {k: round(x, 3) for k, x in timings.items()},
    }
    write_search_html(os.path.join(out_dir, "report.html"), results)
    write_json_atomic(os.path.join(out_dir, "results.json"), results, indent=1)
    return notes + [f"#{h['rank']}: {h['video']} {h['start']:g}-{h['end']:g} s  score "
                    f"{h['score']:.3f}" + ("  found" if h["found"] else "") for h in rows]
