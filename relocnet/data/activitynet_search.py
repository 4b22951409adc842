"""ActivityNet-Search (temporal re-localization): pair files from the published split files.

Upstream files (CGBM, ECCV 2018; see ../shared/benchmarks/README.md): ``{train,val,test}.json``
lists of entries ``{"id", "label", "location": [s, e], "groundtruth": [gs, ge]}`` in C3D steps
of 16 frames; ``groundtruth`` is relative to ``location[0]``. ``perm.npy`` permutes the 200
ActivityNet leaf classes *sorted by name*; train/val/test use perm[:160], perm[160:180],
perm[180:] (the taxonomy names are not shipped, so only sizes and disjointness are checkable).

Pairs, as upstream: query = the ``groundtruth`` segment of entry i; reference = the ``location``
window of a random entry j of the same label whose window is at least as long as the query
(j = i allowed). Upstream drew j with TensorFlow (op seed 6), which cannot be replayed; here j
is drawn with ``numpy.random.RandomState(seed)`` visiting entries in file order, and the result
is written once. Steps become seconds as ``steps * 16 / fps`` of the video.
"""
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .datasets import find_video, video_entry, video_index, write_pair_files

__all__ = ["Entry", "VideoTime", "SPLITS", "UPSTREAM_SEED", "DEFAULT_FPS", "STEP_FRAMES",
           "load_split", "load_class_split", "choose_references", "video_timebase",
           "make_pairs", "prepare_activitynet_search"]

SPLITS = ("train", "val", "test")
STEP_FRAMES = 16  # frames per C3D feature step
UPSTREAM_SEED = 6
DEFAULT_FPS = 30.0  # most ActivityNet (YouTube) videos are 30 or 29.97 fps
CLASS_SLICES = {"train": slice(0, 160), "val": slice(160, 180), "test": slice(180, 200)}


@dataclass(frozen=True)
class Entry:
    """One upstream entry, in C3D steps."""

    index: int
    video_id: str
    label: int
    location: Tuple[int, int]  # window in the whole video
    groundtruth: Tuple[int, int]  # action segment, relative to location[0]

    @property
    def window_steps(self) -> int:
        return self.location[1] - self.location[0]

    @property
    def query_steps(self) -> Tuple[int, int]:
        """The ground-truth segment in steps of the whole video."""
        return (self.location[0] + self.groundtruth[0], self.location[0] + self.groundtruth[1])

    @property
    def query_length(self) -> int:
        return self.groundtruth[1] - self.groundtruth[0]


@dataclass(frozen=True)
class VideoTime:
    """How one video's steps become seconds."""

    path: str  # as written in the pair file
    fps: float
    source: str  # "probe" (read from the video file) or "default" (--default-fps)


def _int_pair(path: str, i: int, e: dict, key: str) -> Tuple[int, int]:
    v = e.get(key)
    if (not isinstance(v, list) or len(v) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)):
        raise ValueError(f"{path}: entry {i}: {key!r} must be [int, int], got {v!r}")
    return v[0], v[1]


def load_split(path: str) -> List[Entry]:
    """Read and check one upstream split file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: split file not found") from None
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries")
    entries = []
    for i, e in enumerate(data):
        if not isinstance(e, dict) or not isinstance(e.get("id"), str) or not e["id"]:
            raise ValueError(f"{path}: entry {i}: expected an object with a string 'id'")
        if not isinstance(e.get("label"), int):
            raise ValueError(f"{path}: entry {i}: 'label' must be an int, got {e.get('label')!r}")
        loc, gt = _int_pair(path, i, e, "location"), _int_pair(path, i, e, "groundtruth")
        if not 0 <= loc[0] < loc[1]:
            raise ValueError(f"{path}: entry {i}: empty or negative location {list(loc)}")
        if not 0 <= gt[0] < gt[1] <= loc[1] - loc[0]:
            raise ValueError(f"{path}: entry {i}: groundtruth {list(gt)} is empty or not inside "
                             f"the location window of {loc[1] - loc[0]} steps")
        entries.append(Entry(i, e["id"], e["label"], loc, gt))
    return entries


def load_class_split(perm_path: str) -> Dict[str, np.ndarray]:
    """perm.npy -> {split: class indices (into the 200 leaf names sorted alphabetically)}."""
    perm = np.load(perm_path)
    if perm.shape != (200,) or sorted(perm.tolist()) != list(range(200)):
        raise ValueError(f"{perm_path}: expected a permutation of 0..199, got shape {perm.shape}")
    return {s: perm[sl] for s, sl in CLASS_SLICES.items()}


def choose_references(entries: Sequence[Entry], seed: int = UPSTREAM_SEED) -> List[int]:
    """For each entry (in order), the index of its reference entry (upstream rule, seeded)."""
    by_label: Dict[int, List[Entry]] = defaultdict(list)
    for e in entries:
        by_label[e.label].append(e)
    rng = np.random.RandomState(seed)
    refs = []
    for e in entries:
        cands = [c.index for c in by_label[e.label] if c.window_steps >= e.query_length]
        refs.append(cands[rng.randint(len(cands))])  # never empty: e itself qualifies
    return refs


def video_timebase(video_ids: Sequence[str], *, video_dir: str, pairs_dir: str, root_dir: str,
                   default_fps: float = DEFAULT_FPS,
                   probe: Optional[Callable[[str], Any]] = None) -> Dict[str, VideoTime]:
    """Each video's path (relative to ``pairs_dir`` when under ``root_dir``) and fps.

    A video present in ``video_dir`` (``v_ID.*`` or ``ID.*``) gives its fps by ``probe``
    (default relocnet.data.video.probe_video); a missing one is assumed at ``default_fps``
    under the name ``v_ID.mp4``.
    """
    index = video_index(video_dir)
    out = {}
    for vid in sorted(set(video_ids)):
        path = find_video(index, (f"v_{vid}", vid))
        if path is None:
            path, fps, source = os.path.join(os.path.abspath(video_dir), f"v_{vid}.mp4"), \
                float(default_fps), "default"
        else:
            if probe is None:
                from .video import probe_video as probe
            fps, source = float(probe(path).fps), "probe"
        out[vid] = VideoTime(video_entry(path, pairs_dir=pairs_dir, root_dir=root_dir), fps,
                             source)
    return out


def _sec(steps: int, fps: float) -> float:
    return round(steps * STEP_FRAMES / fps, 6)


def make_pairs(split: str, entries: Sequence[Entry], refs: Sequence[int],
               videos: Dict[str, VideoTime]) -> List[Dict[str, Any]]:
    """Pair dicts (relocnet/data/pairs.py format) for entries and their chosen references."""
    pairs = []
    for e, j in zip(entries, refs):
        r = entries[j]
        qv, rv = videos[e.video_id], videos[r.video_id]
        q, seg = e.query_steps, r.query_steps
        pairs.append({
            "pair_id": f"{split}_{e.index:05d}",
            "label": str(e.label),
            "query": {"video": qv.path, "start": _sec(q[0], qv.fps), "end": _sec(q[1], qv.fps)},
            "reference": {"video": rv.path, "start": _sec(r.location[0], rv.fps),
                          "end": _sec(r.location[1], rv.fps)},
            "segments": [[_sec(seg[0], rv.fps), _sec(seg[1], rv.fps)]],
            "source": {"query_entry": e.index, "reference_entry": j, "query_steps": list(q),
                       "reference_steps": list(r.location), "segment_steps": list(seg)},
        })
    return pairs


def prepare_activitynet_search(benchmark_dir: str, output: str, *, seed: int = UPSTREAM_SEED,
                               video_dir: Optional[str] = None, default_fps: float = DEFAULT_FPS,
                               force: bool = False, splits: Sequence[str] = SPLITS,
                               probe: Optional[Callable[[str], Any]] = None) -> Dict[str, Dict]:
    """Write OUTPUT/pairs/{split}.json for each split; returns a summary per split."""
    t0 = time.time()
    video_dir = video_dir or os.path.join(output, "videos")
    pairs_dir = os.path.join(output, "pairs")
    classes = load_class_split(os.path.join(benchmark_dir, "perm.npy"))
    outputs, summary = {}, {}
    for split in splits:
        entries = load_split(os.path.join(benchmark_dir, f"{split}.json"))
        labels = {e.label for e in entries}
        if len(labels) != len(classes[split]):
            raise ValueError(f"{benchmark_dir}/{split}.json: {len(labels)} classes, but perm.npy "
                             f"gives {len(classes[split])} to {split}")
        refs = choose_references(entries, seed)
        videos = video_timebase([e.video_id for e in entries], video_dir=video_dir,
                                pairs_dir=pairs_dir, root_dir=output, default_fps=default_fps,
                                probe=probe)
        path = os.path.join(pairs_dir, f"{split}.json")
        outputs[path] = {
            "task": "temporal", "pairs": make_pairs(split, entries, refs, videos),
            "benchmark": "activitynet_search", "split": split, "seed": seed,
            "step_frames": STEP_FRAMES,
            "videos": {v: {"fps": t.fps, "fps_source": t.source} for v, t in videos.items()},
        }
        summary[split] = {"path": path, "pairs": len(entries), "classes": len(labels),
                          "videos": len(videos),
                          "fps_probed": sum(t.source == "probe" for t in videos.values())}
    for path, status in write_pair_files(outputs, force=force).items():
        summary[os.path.splitext(os.path.basename(path))[0]]["status"] = status
    for s in summary.values():
        s["seconds"] = round(time.time() - t0, 2)
    return summary
