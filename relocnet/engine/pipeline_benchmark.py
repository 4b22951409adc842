"""Pipeline benchmark: how many reference seconds relocnet processes per wall second, stage by
stage, and its peak memory on references of growing length.

Stages (each timed on its own, on the shortest reference, at most ``stage_seconds`` of it):

- ``decode``: ``iter_subclips`` at INPUT.VIDEO.FPS and HEIGHT x WIDTH;
- ``features``: the backbone over the model's windows (REFERENCE_SECONDS, WINDOW_OVERLAP,
  ``windows_per_batch`` per call; RelocRCNN adds the RPN on each second once), i.e. the model's
  ``feature_chunks``, on frames decoded beforehand; with 5 s windows overlapping by 4 s every
  second is in 5 windows;
- ``match``: the model's ``relocalize_windows`` against one query descriptor on those chunks held
  in memory (correlation, head, merging windows, post-processing);
- ``match_cached``: ``relocalize`` on the reference with a FeatureCache entry (the second query
  in the same reference): its pass over the reference (reading the entry, matching, merging
  windows, post-processing); the per-call costs (the query's features, hashing the video file
  and the model for the cache key) are reported apart (``fixed_s``);
- ``end_to_end``: ``relocalize`` without a cache (decode, backbone, matching, streamed).

Peak memory: one subprocess per reference length runs ``relocalize`` without a cache and reports
its RSS high-water mark (``resource.getrusage``); the stream holds a bounded number of seconds, so
the peak must not grow with the length.

Long references are not rendered: a clip of the shortest length is encoded once (moving
squares on a textured, drifting background, H.264) and the longer ones are made by remuxing its
packets back to back with shifted timestamps (no re-encoding), under ``cache_dir``.
"""
import json
import os
import subprocess
import sys
import time
from argparse import Namespace
from typing import Any, Dict, Optional, Sequence, Tuple

import av
import numpy as np
import torch

from ..data.video import iter_subclips, probe_video, read_subclips
from ..data.video_writer import write_video
from ..utils.benchmark import format_table, machine_info
from .feature_cache import FeatureCache
from .inference import load_model, prepare_query, relocalize
from .setup import setup_cfg

__all__ = ["synthetic_clip", "loop_video", "reference_videos", "run_pipeline_benchmark"]

TARGET_END_TO_END = 10.0  # x real time (issue 4)
TARGET_MATCH_CACHED = 1000.0
FLAT_MEMORY_TOLERANCE = 0.10  # peak RSS may vary by 10 % across lengths and still be "flat"


# ----------------------------------------------------------------------------- videos


def synthetic_clip(path: str, *, seconds: int, fps: int, size: Tuple[int, int], seed: int = 0
                   ) -> str:
    """Encode ``seconds`` of moving coloured squares on a drifting noise texture (H.264)."""
    h, w = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 8, 0), 8, 1)
    squares = [(rng.integers(0, 256, 3), int(rng.integers(8, max(9, h // 3))), rng.random(4))
               for _ in range(4)]

    def frames():
        for i in range(seconds * fps):
            off = (i // 4) % 8
            f = texture[off: off + h, off: off + w].copy() // 2
            for k, (colour, side, (ax, ay, px, py)) in enumerate(squares):
                x = int((w - side) * (0.5 + 0.5 * np.sin(i * 0.05 * (1 + ax) + 6 * px)))
                y = int((h - side) * (0.5 + 0.5 * np.cos(i * 0.04 * (1 + ay) + 6 * py)))
                f[y: y + side, x: x + side] = colour if (i // (fps * 2) + k) % 3 else 255 - colour
            yield f

    write_video(path, frames(), fps)
    return path


def loop_video(src: str, dst: str, loops: int) -> str:
    """``src`` played ``loops`` times, by remuxing its packets with shifted timestamps (no
    re-encoding); written to a temp file and renamed."""
    tmp = f"{dst}.tmp-{os.getpid()}.mp4"
    with av.open(src) as first:
        stream = first.streams.video[0]
        pts = [p.pts for p in first.demux(stream) if p.pts is not None]
        step = int(round(1 / (stream.average_rate * stream.time_base)))
        period = max(pts) - min(pts) + step
    try:
        with av.open(tmp, mode="w", format="mp4") as out:
            ostream = None
            for k in range(loops):
                with av.open(src) as inp:
                    istream = inp.streams.video[0]
                    if ostream is None:
                        ostream = out.add_stream_from_template(istream)
                    for packet in inp.demux(istream):
                        if packet.dts is None:  # the demuxer's final flush packet
                            continue
                        packet.pts += k * period
                        packet.dts += k * period
                        packet.stream = ostream
                        out.mux(packet)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dst


def reference_videos(cache_dir: str, minutes: Sequence[float], *, fps: int = 24,
                     size: Tuple[int, int] = (240, 320)) -> Dict[float, str]:
    """{minutes: path} of synthetic references; every length must be a whole multiple of the
    shortest, whose clip is encoded once and looped into the others. Files are reused."""
    seconds = {m: int(round(m * 60)) for m in minutes}
    base = min(seconds.values())
    if base < 1 or any(s % base for s in seconds.values()):
        raise ValueError(f"--synthetic-minutes {list(minutes)}: every length must be a whole "
                         f"multiple of the shortest, which must be at least 1 s")
    os.makedirs(cache_dir, exist_ok=True)
    stem = os.path.join(cache_dir, f"synthetic_{size[1]}x{size[0]}_{fps}fps")
    clip = f"{stem}_{base}s.mp4"
    if not os.path.exists(clip):
        synthetic_clip(clip, seconds=base, fps=fps, size=size)
    out = {}
    for m, s in seconds.items():
        path = f"{stem}_{s}s.mp4"
        if not os.path.exists(path):
            loop_video(clip, path, s // base)
        out[m] = path
    return out


# ----------------------------------------------------------------------------- model side


def load(config_file: str, weights: str, opts: Sequence[str] = ()):
    """(cfg, model) for a config file and weights ("" = seeded random initialization)."""
    cfg = setup_cfg(Namespace(config_file=config_file, opts=list(opts)), log=False)
    return cfg, load_model(cfg, weights)


def _query(cfg, model, path: str) -> Dict[str, Any]:
    """The query inputs: the first QUERY_SECONDS of ``path`` (boxes for RelocRCNN: the centre)."""
    v = cfg.INPUT.VIDEO
    info = probe_video(path)
    boxes = None
    if model.task == "spatio_temporal":
        w, h = info.width, info.height
        boxes = {0: [[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]}
    query, _, _ = prepare_query(path, fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                                query_seconds=v.QUERY_SECONDS, min_seconds=1, start=0.0,
                                end=float(min(v.QUERY_SECONDS, info.num_seconds)), boxes=boxes)
    return query


def _rate(seconds: int, wall: float) -> Dict[str, float]:
    return {"seconds": seconds, "wall_s": wall, "x_real_time": seconds / wall if wall > 0 else 0.0}


@torch.no_grad()
def _stages(cfg, model, path: str, stage_seconds: int) -> Dict[str, Dict[str, float]]:
    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    length = min(stage_seconds, probe_video(path).num_seconds)
    t = time.perf_counter()
    n = sum(1 for _ in iter_subclips(path, v.FPS, size, 0, length))
    out = {"decode": _rate(n, time.perf_counter() - t)}

    clips = torch.from_numpy(read_subclips(path, v.FPS, size, 0, length))
    t = time.perf_counter()
    chunks = list(model.feature_chunks(model.window_batches(clips)))
    out["features"] = _rate(length, time.perf_counter() - t)

    qdesc = model.query_descriptor(_query(cfg, model, path))
    t = time.perf_counter()
    for _ in model.relocalize_windows(qdesc, chunks, length, input_size=size, file_size=size):
        pass
    out["match"] = _rate(length, time.perf_counter() - t)
    return out


def _relocalize_rate(cfg, model, path: str, cache: Optional[FeatureCache],
                     per_second_only: bool = False) -> Dict[str, Any]:
    """Rate of one ``relocalize`` call: of the whole call, or (``per_second_only``) of its pass
    over the reference (``timings["reference"]``), without its fixed costs: the query's
    features and the cache key (hashes of the video file and the model)."""
    v = cfg.INPUT.VIDEO
    query = _query(cfg, model, path)
    t = time.perf_counter()
    r = relocalize(model, query, path, fps=v.FPS, size=(v.HEIGHT, v.WIDTH), cache=cache, cfg=cfg)
    wall = time.perf_counter() - t
    fixed = r.timings.get("query_features", 0.0) + r.timings.get("cache_key", 0.0)
    out = _rate(r.reference.num_seconds, r.timings["reference"] if per_second_only else wall)
    return dict(out, cache=r.cache, call_wall_s=wall, fixed_s=fixed)


# ----------------------------------------------------------------------------- memory


def memory_child(config_file: str, weights: str, opts: Sequence[str], path: str) -> Dict[str, Any]:
    """In a fresh process: the RSS high-water mark once the model is loaded, then after
    ``relocalize`` without a cache (MiB; Linux reports KiB)."""
    import resource
    cfg, model = load(config_file, weights, opts)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = _relocalize_rate(cfg, model, path, None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(rate, peak_rss_mib=peak, peak_rss_loaded_mib=before)


def _memory_run(config_file: str, weights: str, opts: Sequence[str], path: str, threads: int
                ) -> Dict[str, Any]:
    code = ("import json, sys, torch; torch.set_num_threads(%d); "
            "from relocnet.engine.pipeline_benchmark import memory_child; "
            "print(json.dumps(memory_child(*json.loads(sys.argv[1]))))" % threads)
    args = json.dumps([config_file, weights, list(opts), path])
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run on {path} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the benchmark


def run_pipeline_benchmark(*, config_file: str, weights: str = "", opts: Sequence[str] = (),
                           video: str = "", minutes: Sequence[float] = (1, 10, 60),
                           cache_dir: str = "output/benchmark_cache", stage_seconds: int = 60,
                           video_fps: int = 24, video_size: Tuple[int, int] = (240, 320)
                           ) -> Tuple[str, Dict[str, Any]]:
    """Run every stage and the memory runs; returns (report text, result dict)."""
    if video:
        info = probe_video(video)
        refs = {round(info.num_seconds / 60, 3): os.path.abspath(video)}
    else:
        refs = reference_videos(os.path.join(cache_dir, "videos"), minutes, fps=video_fps,
                                size=video_size)
    shortest = refs[min(refs)]
    cfg, model = load(config_file, weights, opts)
    stages = _stages(cfg, model, shortest, stage_seconds)
    stages["end_to_end"] = _relocalize_rate(cfg, model, shortest, None)
    cache = FeatureCache(os.path.join(cache_dir, "features"))
    _relocalize_rate(cfg, model, shortest, cache)  # fills the cache (or hits it)
    stages["match_cached"] = _relocalize_rate(cfg, model, shortest, cache, per_second_only=True)
    memory = {}
    for m in sorted(refs):
        memory[str(m)] = _memory_run(config_file, weights, opts, refs[m], torch.get_num_threads())
    peaks = [r["peak_rss_mib"] for r in memory.values()]
    flat = max(peaks) <= min(peaks) * (1 + FLAT_MEMORY_TOLERANCE)
    e2e = min([stages["end_to_end"]["x_real_time"]] + [r["x_real_time"] for r in memory.values()])
    targets = {
        "end_to_end_x_real_time": TARGET_END_TO_END,
        "end_to_end_met": e2e >= TARGET_END_TO_END,
        "match_cached_x_real_time": TARGET_MATCH_CACHED,
        "match_cached_met": stages["match_cached"]["x_real_time"] >= TARGET_MATCH_CACHED,
        "flat_memory_tolerance": FLAT_MEMORY_TOLERANCE, "flat_memory_met": flat,
    }
    v = cfg.INPUT.VIDEO
    result = {
        "benchmark": "pipeline", "machine": machine_info(cfg.MODEL.DEVICE),
        "config_file": config_file, "weights": weights or "(random init)",
        "architecture": type(model).__name__,
        "input": {"fps": v.FPS, "height": v.HEIGHT, "width": v.WIDTH,
                  "reference_seconds": v.REFERENCE_SECONDS, "window_overlap": v.WINDOW_OVERLAP},
        "references": {str(m): p for m, p in refs.items()}, "stages": stages, "memory": memory,
        "end_to_end_x_real_time_min": e2e, "targets": targets,
    }
    return _report(result, config_file, v), result


def _report(result: Dict[str, Any], config_file: str, v) -> str:
    """The benchmark's text: the stage table and the memory table."""
    stages, memory = result["stages"], result["memory"]
    rows = [dict(stage=k, seconds=r["seconds"], wall_s=r["wall_s"], x_real_time=r["x_real_time"],
                 fixed_s=r.get("fixed_s"), call_wall_s=r.get("call_wall_s"))
            for k, r in stages.items()]
    mem_rows = [dict(minutes=m, seconds=r["seconds"], wall_s=r["wall_s"],
                     x_real_time=r["x_real_time"], peak_rss_loaded_mib=r["peak_rss_loaded_mib"],
                     peak_rss_mib=r["peak_rss_mib"]) for m, r in memory.items()]
    mi = result["machine"]
    text = "\n".join([
        f"pipeline benchmark: {config_file} ({result['architecture']}, {v.FPS} fps, "
        f"{v.HEIGHT}x{v.WIDTH}, windows {v.REFERENCE_SECONDS} s overlapping {v.WINDOW_OVERLAP} s) "
        f"on {mi['device']} ({mi['cpu']}, {mi['cores']} cores, torch {mi['torch']}, "
        f"{mi['threads']} threads, load average {mi['load_avg_1min']}, {mi['date']})",
        "reference seconds processed per wall second (x real time), stage by stage:",
        format_table(rows, ["stage", "seconds", "wall_s", "x_real_time", "fixed_s",
                            "call_wall_s"]),
        "(fixed_s: per-call costs, the query's features and the cache key; match_cached "
        "excludes them from wall_s, end_to_end includes them)",
        "",
        "relocalize() without cache, one process per reference length (peak = RSS high-water "
        "mark):",
        format_table(mem_rows, ["minutes", "seconds", "wall_s", "x_real_time",
                                "peak_rss_loaded_mib", "peak_rss_mib"]),
    ])
    return text
