"""The job behind `relocnet relocalize`: query, model, streamed re-localization, report files.

Writes into ``out_dir`` (the CLI's temp directory): timeline.png, keyframes/, segments/,
report.html, and results.json last. See relocnet/cli.py for arguments and error handling.
"""
import os
import sys
import time
from typing import Any, Dict, List, Optional

from tqdm import tqdm

from .. import __version__
from ..data.pairs import write_json_atomic
from ..data.video import probe_video
from ..utils.report import (QUERY_THUMBS, detections_by_second, draw_timeline, segment_list,
                            write_html, write_keyframes, write_segment_clips)
from ..utils.visualize import read_keyframes, sample_seconds
from .feature_cache import FeatureCache
from .inference import (check_lengths, load_model, nearest_boxes, prepare_query, relocalize)

__all__ = ["run_relocalization"]


def _warn(message: str) -> None:
    print(f"relocnet: WARNING: {message}", file=sys.stderr)


def run_relocalization(args, cfg, mode: str, boxes: Optional[Dict[int, List[List[float]]]],
                       out_dir: str, t0: float) -> List[str]:
    """Run the job described by the CLI's ``args``; returns the summary lines to print."""
    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    timings: Dict[str, float] = {}
    t = time.perf_counter()
    query, qinfo, qseconds = prepare_query(
        args.query, fps=v.FPS, size=size, query_seconds=v.QUERY_SECONDS,
        min_seconds=v.MIN_QUERY_SECONDS, start=args.query_start, end=args.query_end, boxes=boxes)
    rinfo = probe_video(args.reference)
    check_lengths(len(qseconds), rinfo)
    timings["decode_query"] = time.perf_counter() - t

    t = time.perf_counter()
    if not args.weights:
        _warn("no trained weights: running an UNTRAINED model with random weights; the results "
              "mean nothing")
    model = load_model(cfg, args.weights)
    timings["load_model"] = time.perf_counter() - t

    cache = None if args.no_cache else FeatureCache(args.cache_dir or None)
    bar = tqdm(total=rinfo.num_seconds, unit="s", file=sys.stderr, disable=args.no_progress,
               desc=f"re-localizing in {os.path.basename(args.reference)}", dynamic_ncols=True)
    with bar:
        reloc = relocalize(model, query, args.reference, fps=v.FPS, size=size, cache=cache,
                           cfg=cfg, progress=bar.update,
                           log=lambda m: tqdm.write(f"relocnet: {m}", file=sys.stdout))
    timings.update(reloc.timings)

    t = time.perf_counter()
    outputs = reloc.outputs
    scores = outputs["second_scores"].tolist()
    segments = segment_list(outputs)
    dets = detections_by_second(outputs)
    thumbs = sample_seconds(qseconds[0], qseconds[-1] + 1, QUERY_THUMBS)
    qframes = read_keyframes(args.query, thumbs)
    qstart = qseconds[0] if args.query_start is None else args.query_start
    qend = qseconds[-1] + 1 if args.query_end is None else args.query_end
    draw_timeline(
        os.path.join(out_dir, "timeline.png"), scores, segments,
        threshold=cfg.MODEL.RELOC.DECODER.THRESHOLD,
        query_frames=[qframes[s] for s in thumbs if s in qframes],
        query_boxes=[nearest_boxes(boxes, s) if boxes else [] for s in thumbs if s in qframes],
        title=f"query {os.path.basename(args.query)} [{qstart:g}, {qend:g}) s  ->  reference "
              f"{os.path.basename(args.reference)} ({rinfo.num_seconds} s)")
    keyframes = write_keyframes(out_dir, args.reference, segments, scores, dets)
    clips = write_segment_clips(out_dir, rinfo, segments, scores, dets)
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0

    r = cfg.MODEL.RELOC
    results: Dict[str, Any] = {
        "relocnet_version": __version__,
        "mode": mode,
        "query": {"video": os.path.abspath(args.query), "start": float(qstart),
                  "end": float(qend), "seconds": qseconds,
                  "boxes": {str(k): b for k, b in sorted(boxes.items())} if boxes else None},
        "reference": {"video": os.path.abspath(args.reference), "duration": rinfo.duration,
                      "fps": rinfo.fps, "width": rinfo.width, "height": rinfo.height,
                      "codec": rinfo.codec, "seconds": rinfo.num_seconds},
        "config": os.path.abspath(args.config_file),
        "weights": os.path.abspath(args.weights) if args.weights else None,
        "random_weights": not args.weights,
        "model": {"meta_architecture": cfg.MODEL.META_ARCHITECTURE, "fps": v.FPS,
                  "input_size": list(size), "reference_seconds": v.REFERENCE_SECONDS,
                  "window_overlap": v.WINDOW_OVERLAP,
                  "decoder": {"name": r.DECODER.NAME, "threshold": r.DECODER.THRESHOLD,
                              "top_k": r.DECODER.TOP_K}},
        "found": bool(outputs["found"]),
        "match_threshold": float(outputs["match_threshold"]),
        "segments": segments,
        "second_scores": scores,
        "cache": {"status": reloc.cache, "dir": cache.root if cache else None,
                  "key": reloc.cache_key or None, "messages": reloc.messages},
        "timings": {k: round(x, 3) for k, x in timings.items()},
        "files": {"report": "report.html", "timeline": "timeline.png",
                  "keyframes": {str(k): p for k, p in keyframes.items()},
                  "segments": {str(k): p for k, p in clips.items()}},
    }
    if mode == "spatio_temporal":
        results["detections"] = [d for t in sorted(dets) for d in dets[t]]
    write_html(os.path.join(out_dir, "report.html"), results, keyframes, clips)
    write_json_atomic(os.path.join(out_dir, "results.json"), results, indent=1)
    verdict = "found" if results["found"] else "not found"
    return [f"{verdict} (threshold {results['match_threshold']:.3f})"] + [
        f"#{s['rank']}: {s['start']:g}-{s['end']:g} s  match probability {s['probability']:.3f}"
        f"  (score {s['score']:.3f})" for s in segments]
