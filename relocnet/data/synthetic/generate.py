"""Generate a SynthReloc dataset: render the videos, measure the boxes, write the pair files.

Layout of a dataset directory (all paths inside pair files are relative to the pair file)::

    DIR/manifest.json        name, version, seed, preset, fps, frame size, counts per split
    DIR/classes.json         every class: split, family, what distinguishes it, its motion twin
    DIR/README.md            the same in words
    DIR/pairs/{temporal,spatio_temporal}_{train,val,test}.json   (relocnet.data.pairs format)
    DIR/videos/{train,val,test}/{ref_NNNNN,query_<class>_NNN}.mp4  (H.264, 160x120, 24 fps)

A dataset is built in a sibling directory ``DIR.tmp-*`` and renamed to ``DIR`` only when every
file is written, so ``DIR`` is either absent or complete (never half-written).
"""
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2

from ..pairs import save_pairs, write_json_atomic
from ..video_writer import write_video
from .actions import ACTIONS, IDLE, classes
from .plan import PRESETS, SPLITS, TIERS, PairPlan, class_runs, plan_split
from .scene import FPS, FRAME_H, FRAME_W, SceneRenderer, VideoPlan, keyframe_index

__all__ = ["VERSION", "generate", "render_one", "build_pairs", "class_table"]

VERSION = "1.0"
CRF = 23
# x264 "superfast" with macroblock-tree rate control: ~30 % less encoding time than "veryfast"
# for ~15 % larger files at these tiny frame sizes
ENCODER = dict(preset="superfast", x264_params="mbtree=1:rc-lookahead=10")
# per second t of a video: for each actor (box or None, visibility, action at the keyframe)
Measures = Dict[int, List[Tuple[Optional[List[int]], float, str]]]


def render_one(job: Tuple[VideoPlan, str, bool]) -> Tuple[str, Measures]:
    """Render one video (or, with write=False, only its keyframes) and measure its actors."""
    plan, videos_dir, write = job
    renderer = SceneRenderer(plan)
    keys = [keyframe_index(t) for t in range(plan.length)]
    measured: Dict[int, list] = {}
    if write:
        write_video(os.path.join(videos_dir, plan.name), renderer.frames(keys, measured), FPS, crf=CRF,
                    **ENCODER)
    else:
        measured = {i: renderer.render(i, measure=True)[1] for i in keys}
    return plan.name, {t: measured[keyframe_index(t)] for t in range(plan.length)}


def _init_worker():
    cv2.setNumThreads(1)


def build_pairs(pair_plans: List[PairPlan], plans: Dict[str, VideoPlan], measures: Dict[str, Measures],
                video_prefix: str = "../videos/") -> Tuple[List[dict], List[dict]]:
    """Temporal and spatio-temporal pair dicts of one split (same pairs, the latter with boxes)."""
    temporal, spatio = [], []
    for p in pair_plans:
        ref, qry = plans[p.reference], plans[p.query]
        runs = class_runs(ref, p.label)
        boxes, vis = {}, {}
        for s, e in runs:
            for t in range(s, e):
                found = [(b, v) for b, v, a in measures[ref.name][t] if a == p.label and b is not None]
                if not found:
                    raise RuntimeError(f"{p.pair_id}: no visible actor doing {p.label} at second {t}")
                boxes[t] = [b for b, _ in found]
                vis[t] = [v for _, v in found]
        qboxes = {}
        for t in range(qry.length):
            b, _, a = measures[qry.name][t][0]
            if b is None or a != p.label:
                raise RuntimeError(f"{p.pair_id}: query actor not visible at second {t}")
            qboxes[t] = b
        twin = ACTIONS[p.label].twin
        twin_secs = sum(e - s for s, e in class_runs(ref, twin)) if twin else 0
        base = {
            "pair_id": p.pair_id, "label": p.label,
            "query": {"video": video_prefix + qry.name, "start": 0, "end": qry.length},
            "reference": {"video": video_prefix + ref.name, "start": 0, "end": ref.length},
            "segments": [[s, e] for s, e in runs],
            "twin": twin, "twin_kind": ACTIONS[p.label].twin_kind, "twin_seconds": twin_secs,
            "num_actors": len(ref.actors),
        }
        temporal.append(dict(base))
        st = dict(base)
        st["query"] = dict(base["query"], boxes=qboxes)
        st["boxes"] = boxes
        st["visibility"] = vis
        spatio.append(st)
    return temporal, spatio


def class_table() -> List[dict]:
    return [{"name": a.name, "split": a.split, "family": a.family, "description": a.description,
             "twin": a.twin, "twin_kind": a.twin_kind, "motion_only_twin": a.twin is not None,
             "translates": a.translates, "procedural": a.procedural} for a in classes()]


def _readme(manifest: dict) -> str:
    lines = [
        f"# SynthReloc {manifest['version']} (seed {manifest['seed']}, preset {manifest['preset']}, "
        f"tier {manifest['tier']})", "",
        f"Rendered by datasets/prepare_synthetic.py. Videos: H.264 mp4, {FRAME_W}x{FRAME_H}, {FPS} fps.",
        "Pair files (relocnet.data.pairs format) in pairs/, one per task and split; video paths are",
        "relative to the pair file. Temporal and spatio-temporal files hold the same pairs.",
        "Boxes: pixels of the video, [x1, y1, x2, y2], of every actor doing the class at the keyframe",
        "(time t + 0.5) of second t, amodal (occluded parts included), clipped to the frame; kept",
        "even when the actor is mostly hidden (`visibility` gives the unoccluded fraction).",
        "Extra pair keys: twin (the class's motion-only twin), twin_kind, twin_seconds (reference",
        "seconds in which some actor does the twin), num_actors.", "",
        "| class | split | twin | what distinguishes it |", "|---|---|---|---|"]
    for c in class_table():
        lines.append(f"| {c['name']} | {c['split']} | {c['twin'] or '-'} | {c['description']} |")
    lines += ["", "| split | pairs | videos | seconds of video |", "|---|---|---|---|"]
    for s, v in manifest["splits"].items():
        lines.append(f"| {s} | {v['pairs']} | {v['videos']} | {v['seconds']} |")
    return "\n".join(lines) + "\n"


def generate(output: str, seed: int, preset: str = "small", workers: int = 2, overwrite: bool = False,
             write_videos: bool = True, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
             tier: str = "hard", splits: Sequence[str] = SPLITS) -> dict:
    """Build the dataset at ``output`` and return its manifest. See the module docstring.

    ``splits`` renders only those splits (e.g. ``("test",)`` for a larger evaluation over many
    seeds); each split's videos and pairs are the same as in a dataset rendered with all splits.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {sorted(TIERS)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise ValueError(f"unknown SynthReloc split(s) {unknown}; choose from {list(SPLITS)}" if unknown
                         else f"no SynthReloc split to render; choose from {list(SPLITS)}")
    splits = [s for s in SPLITS if s in splits]
    out = os.path.abspath(output)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} already exists (pass overwrite=True / --overwrite to replace it)")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".tmp-", dir=parent)
    t0 = time.time()
    try:
        plans, pairs = {}, {}
        for split in splits:
            vids, pairs[split] = plan_split(seed, split, PRESETS[preset], tier)
            plans.update((v.name, v) for v in vids)
        jobs = sorted(plans.values(), key=lambda v: -v.length)  # longest first balances workers
        jobs = [(v, os.path.join(tmp, "videos"), write_videos) for v in jobs]
        measures: Dict[str, Measures] = {}
        log(f"SynthReloc: rendering {len(jobs)} videos "
            f"({sum(v.length for v in plans.values())} s) with {workers} worker(s)")
        if workers > 1:
            # fresh workers, not forks: a fork of a process whose OpenCV thread pool has run
            # (any cv2.resize before, e.g. in a test or a notebook) can deadlock in the child
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
                else "spawn"
            with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker) as pool:
                for k, (name, m) in enumerate(pool.imap_unordered(render_one, jobs)):
                    measures[name] = m
                    if (k + 1) % max(len(jobs) // 10, 1) == 0:
                        log(f"  {k + 1}/{len(jobs)} videos, {time.time() - t0:.0f} s")
        else:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                measures.update(render_one(j) for j in jobs)
            finally:
                cv2.setNumThreads(threads)
        manifest = {"name": "SynthReloc", "version": VERSION, "seed": seed, "preset": preset,
                    "tier": tier, "fps": FPS, "width": FRAME_W, "height": FRAME_H, "idle": ACTIONS[IDLE].description,
                    "splits": {}, "pair_files": []}
        for split in splits:
            temporal, spatio = build_pairs(pairs[split], plans, measures)
            for task, items in (("temporal", temporal), ("spatio_temporal", spatio)):
                rel = f"pairs/{task}_{split}.json"
                save_pairs(os.path.join(tmp, rel), task, items, dataset="synthreloc", split=split,
                           seed=seed, preset=preset, tier=tier, version=VERSION)
                manifest["pair_files"].append(rel)
            names = [v for v in plans if v.startswith(split + "/")]
            manifest["splits"][split] = {"pairs": len(temporal), "videos": len(names),
                                         "seconds": sum(plans[v].length for v in names),
                                         "classes": [a.name for a in classes(split)]}
        write_json_atomic(os.path.join(tmp, "classes.json"), {"version": VERSION, "classes": class_table()},
                          indent=1)
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(_readme(manifest))
        write_json_atomic(os.path.join(tmp, "manifest.json"), manifest, indent=1)
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=os.path.basename(out) + ".old-", dir=parent)
            os.rename(out, os.path.join(old, "d"))
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"SynthReloc: wrote {out} in {time.time() - t0:.1f} s")
    return manifest
