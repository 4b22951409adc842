"""From a pair record (DatasetCatalog) to the tensors the re-localization models take.

Output per pair (the models' input contract, see relocnet/modeling/meta_arch/common.py):
``query`` uint8 (Tq, N, H, W, 3) zero-padded to INPUT.VIDEO.QUERY_SECONDS with ``query_valid``;
``query_boxes`` (Tq, D, 4) in input pixels (spatio-temporal); ``reference`` uint8 (Tr, N, H, W, 3)
with ``reference_seconds``; ``match`` (Tr,) per-second ground truth; ``instances`` (Tr Instances
of matching actors' boxes, spatio-temporal); ``height``/``width`` of the video file.

Training (paper §4.1): the reference is a REFERENCE_SECONDS window, cropped around the ground
truth with probability CROP_AROUND_GT_PROB (anywhere in the reference otherwise); query and
reference get the same horizontal flip and independent brightness/contrast jitter.
At test time the whole reference span is given; the model windows it.
"""
import copy
import hashlib
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import Boxes, Instances

from ..utils.fileio import atomic_open
from .video import probe_video, read_subclips

__all__ = ["RelocPairMapper", "DecodedVideoCache", "seconds_of_span", "match_vector",
           "nearest_boxes", "as_box_list", "query_inputs", "query_box_inputs"]


def seconds_of_span(start: float, end: float) -> List[int]:
    """Whole seconds t whose sub-clip [t, t+1) overlaps [start, end) by at least half a second."""
    first, last = int(math.floor(start + 0.5)), int(math.ceil(end - 0.5))
    return list(range(first, max(first, last)))


def match_vector(seconds: Sequence[int], segments: Sequence[Sequence[float]]) -> np.ndarray:
    """1.0 for each second whose keyframe (t + 0.5) lies inside a ground-truth segment."""
    out = np.zeros(len(seconds), dtype=np.float32)
    for i, t in enumerate(seconds):
        c = t + 0.5
        out[i] = float(any(s <= c < e for s, e in segments))
    return out


def as_box_list(value) -> List[List[float]]:
    """A query box entry: one box [x1, y1, x2, y2] or a list of D boxes."""
    if value and isinstance(value[0], (list, tuple)):
        return [list(b) for b in value]
    return [list(value)]


def nearest_boxes(boxes: Dict[int, Any], second: int) -> List[List[float]]:
    """The boxes of ``second``, or of the nearest annotated second (the earlier on ties)."""
    return as_box_list(boxes[min(boxes, key=lambda k: (abs(k - second), k))])


def query_inputs(frames: np.ndarray, query_seconds: int) -> Dict[str, torch.Tensor]:
    """``query`` (uint8 (Tq, N, H, W, 3)) and ``query_valid`` (Tq,) of a query's decoded seconds:
    zero-padded to ``query_seconds`` (§4.1); a longer query is kept whole (the models window it).
    What the mapper gives the models and ``relocnet relocalize`` prepares alike."""
    tq = max(query_seconds, len(frames))
    query = np.zeros((tq,) + frames.shape[1:], dtype=np.uint8)
    query[: len(frames)] = frames
    return {"query": torch.from_numpy(query), "query_valid": torch.arange(tq) < len(frames)}


def query_box_inputs(boxes: Dict[int, Any], seconds: Sequence[int], length: int,
                     scale: Tuple[float, float]) -> np.ndarray:
    """``query_boxes`` (length, D, 4) in input pixels: each of the query's ``seconds`` takes the
    boxes of the nearest annotated second, D is the most boxes of an annotated second (one with
    fewer repeats its last), padding seconds repeat the last real one; ``scale`` (sx, sy) maps the
    query file's pixels to the input's."""
    per = [nearest_boxes(boxes, t) for t in seconds]
    d = max(len(as_box_list(b)) for b in boxes.values())
    out = np.zeros((length, d, 4), dtype=np.float32)
    for i in range(length):
        b = per[min(i, len(per) - 1)]
        out[i] = np.asarray(b + [b[-1]] * (d - len(b)), dtype=np.float32)
    return out * np.array([scale[0], scale[1]] * 2, dtype=np.float32)


class SeededDraws:
    """Mixin: ``_next_rng()`` gives the generator of (``self.seed``, call number) for mappers
    called without an ``rng`` (the Trainer always passes one per sample position). A mapper
    built with ``seed=None`` draws its base seed once, from fresh entropy."""

    seed: Optional[int] = None
    _calls: int = 0

    def _next_rng(self) -> np.random.Generator:
        if self.seed is None:
            self.seed = int(np.random.SeedSequence().entropy % 2**63)
        self._calls += 1
        return np.random.default_rng([self.seed, self._calls])


def config_seed(cfg) -> Optional[int]:
    """cfg.SEED when it fixes the run (>= 0), else None."""
    return int(cfg.SEED) if cfg.SEED >= 0 else None


class DecodedVideoCache:
    """Whole videos decoded once at (fps, size) into ``.npy`` files, read back by memory map.

    Training revisits every video many times; decoding H.264 costs more than the small CPU
    models' forward pass. An entry is keyed by the file's absolute path, size and mtime and the
    decoding parameters, written to a temporary name and renamed when complete, so a killed
    writer never leaves an entry that is read back. ``directory=""`` disables the cache.
    """

    def __init__(self, directory: str, fps: int, size: Tuple[int, int]):
        self.directory, self.fps, self.size = directory, fps, tuple(size)

    def _entry(self, path: str) -> str:
        st = os.stat(path)
        key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{self.fps}|{self.size}"
        return os.path.join(self.directory, hashlib.sha1(key.encode()).hexdigest() + ".npy")

    def fill(self, path: str) -> Optional[np.ndarray]:
        """Decode ``path`` into its entry unless it exists; return the frames if decoded now."""
        entry = self._entry(path)
        if os.path.exists(entry):
            return None
        frames = read_subclips(path, self.fps, self.size)
        os.makedirs(self.directory, exist_ok=True)
        with atomic_open(entry, "wb") as f:
            np.save(f, frames)
        return frames

    def read(self, path: str, first: int, stop: int) -> np.ndarray:
        """Sub-clips of seconds [first, stop) as uint8 (T, N, H, W, 3)."""
        if not self.directory:
            return read_subclips(path, self.fps, self.size, first, stop)
        frames = self.fill(path)
        if frames is not None:
            return frames[first:stop]
        return np.asarray(np.load(self._entry(path), mmap_mode="r")[first:stop])


class RelocPairMapper(SeededDraws):
    """Decode and prepare one query/reference pair for the models."""

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        task: str,
        fps: int,
        size: Tuple[int, int],
        query_seconds: int,
        reference_seconds: int,
        crop_around_gt_prob: float = 0.9,
        color_jitter: float = 0.0,
        hflip_prob: float = 0.0,
        decode_cache: str = "",
        seed: Optional[int] = None,
    ):
        assert task in ("temporal", "spatio_temporal"), task
        self.seed = seed
        self.is_train = is_train
        self.task = task
        self.fps = fps
        self.size = tuple(size)
        self.query_seconds = query_seconds
        self.reference_seconds = reference_seconds
        self.crop_around_gt_prob = crop_around_gt_prob
        self.color_jitter = color_jitter
        self.hflip_prob = hflip_prob
        self.frames = DecodedVideoCache(decode_cache, fps, size)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, task: Optional[str] = None):
        if task is None:
            from ..modeling.meta_arch import model_task

            task = model_task(cfg)
        v = cfg.INPUT.VIDEO
        return dict(
            is_train=is_train,
            task=task,
            fps=v.FPS,
            size=(v.HEIGHT, v.WIDTH),
            query_seconds=v.QUERY_SECONDS,
            reference_seconds=v.REFERENCE_SECONDS,
            crop_around_gt_prob=v.CROP_AROUND_GT_PROB if is_train else 0.0,
            color_jitter=v.COLOR_JITTER if is_train else 0.0,
            hflip_prob=v.HFLIP_PROB if is_train else 0.0,
            decode_cache=v.DECODE_CACHE,
            seed=config_seed(cfg),
        )

    # ------------------------------------------------------------------ reference window
    def _reference_window(self, seconds: List[int], match: np.ndarray, rng) -> slice:
        k = self.reference_seconds
        if not self.is_train or len(seconds) <= k:
            return slice(0, len(seconds))
        positives = np.flatnonzero(match)
        if len(positives) and rng.random() < self.crop_around_gt_prob:
            # a window that contains at least one matching second, uniformly among those
            lo = max(0, int(positives.min()) - k + 1)
            hi = min(len(seconds) - k, int(positives.max()))
            start = int(rng.integers(lo, hi + 1))
        else:
            start = int(rng.integers(0, len(seconds) - k + 1))
        return slice(start, start + k)

    def _jitter(self, frames: np.ndarray, rng) -> np.ndarray:
        if self.color_jitter <= 0:
            return frames
        a = 1.0 + rng.uniform(-self.color_jitter, self.color_jitter)  # contrast
        b = 255.0 * rng.uniform(-self.color_jitter, self.color_jitter) / 2  # brightness
        mean = frames.mean()
        out = (frames.astype(np.float32) - mean) * a + mean + b
        return np.clip(out, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ main
    def __call__(self, record: Dict[str, Any], rng: Optional[np.random.Generator] = None
                 ) -> Dict[str, Any]:
        """``rng``: the generator of every random draw (the Trainer gives one per sample
        position); default: test mode draws nothing random, training draws from the mapper's
        own stream of (``seed``, call number)."""
        record = copy.deepcopy(record)
        if rng is None:
            rng = np.random.default_rng(0) if not self.is_train else self._next_rng()
        q, r = record["query"], record["reference"]
        ref_info = probe_video(r["video"])

        # query: zero-padded to QUERY_SECONDS (§4.1). A longer query is cut to a random
        # QUERY_SECONDS crop in training and kept whole at test time (the models window it, as
        # `relocnet relocalize` does)
        q_seconds = seconds_of_span(q["start"], q["end"])
        if self.is_train and len(q_seconds) > self.query_seconds:
            first = int(rng.integers(0, len(q_seconds) - self.query_seconds + 1))
            q_seconds = q_seconds[first : first + self.query_seconds]
        inputs = query_inputs(self.frames.read(q["video"], q_seconds[0], q_seconds[-1] + 1),
                              self.query_seconds)

        # reference: a K-second window (training) or the whole span (test)
        r_seconds = seconds_of_span(r["start"], r["end"])
        match = match_vector(r_seconds, record["segments"])
        win = self._reference_window(r_seconds, match, rng)
        r_seconds, match = r_seconds[win], match[win]
        reference = self.frames.read(r["video"], r_seconds[0], r_seconds[-1] + 1)
        if len(reference) < len(r_seconds):  # the span ends after the video's last whole second
            r_seconds, match = r_seconds[: len(reference)], match[: len(reference)]

        query, reference = self._jitter(inputs["query"].numpy(), rng), self._jitter(reference, rng)
        flip = self.is_train and rng.random() < self.hflip_prob
        if flip:
            query = query[:, :, :, ::-1]
            reference = reference[:, :, :, ::-1]
        out = {
            "pair_id": record["pair_id"],
            "task": self.task,
            "label": record.get("label", ""),
            # set by the Trainer (aux loss); a mirrored clip may show another class (SynthReloc's
            # walk_left is walk_right mirrored), so a flipped pair is unlabelled
            "label_index": -1 if flip else int(record.get("label_index", -1)),
            "query": torch.from_numpy(np.ascontiguousarray(query)),
            "query_valid": inputs["query_valid"],
            "reference": torch.from_numpy(np.ascontiguousarray(reference)),
            "reference_seconds": torch.as_tensor(r_seconds, dtype=torch.long),
            "match": torch.from_numpy(match),
            "height": ref_info.height,
            "width": ref_info.width,
            "input_size": self.size,
            "hflip": bool(flip),
        }
        if self.task == "spatio_temporal":
            q_info = ref_info if q["video"] == r["video"] else probe_video(q["video"])
            out.update(self._boxes(record, q_seconds, len(query), q_info, ref_info, r_seconds,
                                   flip))
        return out

    def _boxes(self, record, q_seconds, tq: int, q_info, ref_info, r_seconds, flip: bool):
        """``query_boxes`` and the ``instances`` of the matching actors, in input pixels."""
        h, w = self.size
        qboxes = query_box_inputs(record["query"]["boxes"], q_seconds, tq,
                                  (w / q_info.width, h / q_info.height))
        sx, sy = w / ref_info.width, h / ref_info.height
        instances = []
        for t in r_seconds:
            boxes = np.asarray(record.get("boxes", {}).get(t, []), dtype=np.float32)
            boxes = boxes.reshape(-1, 4) * np.array([sx, sy, sx, sy], dtype=np.float32)
            inst = Instances((h, w))
            inst.gt_boxes = Boxes(torch.from_numpy(boxes))
            inst.gt_classes = torch.zeros(len(boxes), dtype=torch.long)
            instances.append(inst)
        if flip:
            qboxes[..., [0, 2]] = w - qboxes[..., [2, 0]]
            for inst in instances:
                b = inst.gt_boxes.tensor.clone()
                b[:, [0, 2]] = w - b[:, [2, 0]]
                inst.gt_boxes = Boxes(b)
        return {"query_boxes": torch.from_numpy(np.ascontiguousarray(qboxes)),
                "instances": instances}
