"""AVAv2.1-Search (spatio-temporal re-localization): pair files from the AVA v2.1 CSVs.

Upstream rules (warp-LSTM, CVPR 2019; ../shared/benchmarks/README.md):
- a person's *combined label* at a keyframe = the sorted tuple of its action ids there;
- ``val_test.json`` = ``[test_labels, val_labels]``; val/test pairs come from the val CSV;
  training uses the train CSV minus every (video, second) that carries a val/test label;
- query = one person's maximal run of consecutive seconds with one combined label;
- reference = a random run of the same label (the query's own run allowed), drawn with
  ``numpy.random.RandomState(seed)``; a run shorter than 10 s is padded on each side by its own
  length, clamped to seconds 900..1800; ground truth = the boxes of every person carrying that
  label at each reference second.
Runs are visited label by label (val/test: in val_test.json order; train: sorted), each label's
runs sorted by (video, person, first second). Upstream iterated Python-2 dicts, so its draws
cannot be replayed; its own val/test JSON files can be imported with ``from_upstream_pairs``.

Time: AVA's timestamp T (keyframe at time T of the file) becomes pair-file second T, the
sub-clip [T, T+1) whose keyframe is at T + 0.5: a 0.5 s shift, as in upstream's 1-second clips.
Boxes: CSV x1, y1, x2, y2 normalized -> pixels of the video file; upstream JSON uses y1, x1, y2, x2.
"""
import csv
import json
import os
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .datasets import find_video, video_entry, video_index, write_pair_files
from .pairs import seconds_to_segments

__all__ = ["Run", "VideoSize", "AvaAnnotations", "read_ava_csv", "load_val_test", "label_str",
           "find_runs", "persons_by_label", "reference_span", "video_sizes", "build_pairs",
           "upstream_box_to_xyxy", "from_upstream_pairs", "UPSTREAM_SEED", "SPLITS"]

SPLITS = ("train", "val", "test")
UPSTREAM_SEED = 0
MIN_REFERENCE_SECONDS = 10
SECOND_RANGE = (900, 1800)  # references are clamped to these seconds of the (full) AVA video
CSV_FILES = {"train": "ava_train_v2.1.csv", "val": "ava_val_v2.1.csv"}

Label = Tuple[int, ...]
Key = Tuple[str, int, int]  # (video, second, person)


@dataclass(frozen=True)
class Run:
    """A person's maximal run of consecutive seconds with one combined label."""

    video: str
    person: int
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class VideoSize:
    path: str  # as written in the pair file
    width: int
    height: int
    source: str  # "probe" or "default"


@dataclass
class AvaAnnotations:
    """One CSV: normalized box (x1, y1, x2, y2) and combined label per (video, second, person)."""

    boxes: Dict[Key, Tuple[float, float, float, float]]
    labels: Dict[Key, Label]


def label_str(label: Sequence[int]) -> str:
    """(12, 80) -> "12+80"."""
    return "+".join(str(a) for a in label)


def _row_error(path: str, line: int, row: Sequence[str], problem: str) -> ValueError:
    return ValueError(f"{path}:{line}: {problem}: {','.join(row)!r}")


def read_ava_csv(path: str) -> AvaAnnotations:
    """Read ``video_id, timestamp, x1, y1, x2, y2, action_id, person_id`` rows.

    Raises ValueError naming the file and line of a malformed row.
    """
    boxes: Dict[Key, Tuple[float, ...]] = {}
    where: Dict[Key, int] = {}
    actions: Dict[Key, Set[int]] = defaultdict(set)
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.reader(f), 1):
            if len(row) != 8:
                if not any(c.strip() for c in row):
                    continue
                raise _row_error(path, line, row, "expected 8 columns (video_id, timestamp, x1, "
                                 f"y1, x2, y2, action_id, person_id), got {len(row)}")
            video = row[0].strip()
            try:
                second, action, person = int(row[1]), int(row[6]), int(row[7])
                box = (float(row[2]), float(row[3]), float(row[4]), float(row[5]))
            except ValueError:
                raise _row_error(path, line, row, "timestamp, action_id and person_id must be "
                                 "integers, x1..y2 numbers") from None
            x1, y1, x2, y2 = box
            if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
                raise _row_error(path, line, row,
                                 "box must satisfy 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
            if not video or action < 1:
                raise _row_error(path, line, row, "empty video_id or action_id < 1")
            key = (video, second, person)
            old = boxes.setdefault(key, box)
            if old is not box and old != box:
                raise _row_error(path, line, row, f"person {person} at {video} {second} has "
                                 f"another box on line {where[key]}")
            where.setdefault(key, line)
            actions[key].add(action)
    return AvaAnnotations(boxes, {k: tuple(sorted(v)) for k, v in actions.items()})


def load_val_test(path: str) -> Tuple[List[Label], List[Label]]:
    """val_test.json -> (test_labels, val_labels), each a list of sorted action-id tuples."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, list) for x in data)):
        raise ValueError(f"{path}: expected [test_labels, val_labels]")
    out = []
    for name, labels in zip(("test", "val"), data):
        for lab in labels:
            if not (isinstance(lab, list) and lab and all(isinstance(a, int) for a in lab)):
                raise ValueError(f"{path}: {name} label {lab!r} is not a list of action ids")
        out.append([tuple(sorted(lab)) for lab in labels])
    if set(out[0]) & set(out[1]):
        raise ValueError(f"{path}: labels {sorted(set(out[0]) & set(out[1]))} are in both lists")
    return out[0], out[1]


def find_runs(labels: Dict[Key, Label], *, keep: Optional[Set[Label]] = None,
              drop: Set[Label] = frozenset(),
              excluded: Set[Tuple[str, int]] = frozenset()) -> Dict[Label, List[Run]]:
    """Maximal runs per combined label; ``excluded`` (video, second)s break runs and are left out."""
    tracks: Dict[Tuple[str, int], Dict[int, Label]] = defaultdict(dict)
    for (video, second, person), lab in labels.items():
        if (video, second) not in excluded and lab not in drop and (keep is None or lab in keep):
            tracks[(video, person)][second] = lab
    runs: Dict[Label, List[Run]] = defaultdict(list)
    for (video, person), by_sec in sorted(tracks.items()):
        secs = sorted(by_sec)
        start = secs[0]
        for prev, cur in zip(secs, secs[1:] + [None]):
            if cur is None or cur != prev + 1 or by_sec[cur] != by_sec[prev]:
                runs[by_sec[prev]].append(Run(video, person, start, prev))
                start = cur
    return {lab: sorted(r, key=lambda x: (x.video, x.person, x.first)) for lab, r in runs.items()}


def persons_by_label(labels: Dict[Key, Label], excluded: Set[Tuple[str, int]] = frozenset()
                     ) -> Dict[Tuple[Label, str, int], List[int]]:
    """(label, video, second) -> sorted persons carrying that label there."""
    out: Dict[Tuple[Label, str, int], List[int]] = defaultdict(list)
    for (video, second, person), lab in sorted(labels.items()):
        if (video, second) not in excluded:
            out[(lab, video, second)].append(person)
    return out


def reference_span(run: Run, *, lo: int = SECOND_RANGE[0], hi: int = SECOND_RANGE[1],
                   blocked: Sequence[int] = ()) -> Tuple[int, int]:
    """[start, end) seconds of a reference run, padded when short (upstream rule).

    ``blocked`` (sorted) seconds of the same video (training: seconds removed for val/test labels) stop
    the padding, so that no reference shows a held-out action.
    """
    n = run.length
    start, end = run.first, run.last + 1
    if n < MIN_REFERENCE_SECONDS:
        start, end = max(run.first - n, lo), min(run.last + n + 1, hi)
    i = bisect_left(blocked, run.first)  # blocked is sorted
    if i > 0:
        start = max(start, blocked[i - 1] + 1)
    j = bisect_right(blocked, run.last)
    if j < len(blocked):
        end = min(end, blocked[j])
    return min(start, run.first), max(end, run.last + 1)


def video_sizes(videos: Sequence[str], *, video_dir: str, pairs_dir: str, root_dir: str,
                default_size: Optional[Tuple[int, int]] = None,
                probe: Optional[Callable[[str], Any]] = None) -> Dict[str, VideoSize]:
    """Each video's pair-file path and (width, height): probed when ``video_dir/ID.*`` exists,
    else ``default_size`` (ValueError if that is None)."""
    index = video_index(video_dir)
    out, missing = {}, []
    for vid in sorted(set(videos)):
        path = find_video(index, (vid,))
        if path is not None:
            if probe is None:
                from .video import probe_video as probe
            info = probe(path)
            w, h, source = int(info.width), int(info.height), "probe"
        elif default_size is not None:
            path = os.path.join(os.path.abspath(video_dir), f"{vid}.mkv")
            (w, h), source = default_size, "default"
        else:
            missing.append(vid)
            continue
        out[vid] = VideoSize(video_entry(path, pairs_dir=pairs_dir, root_dir=root_dir),
                             w, h, source)
    if missing:
        raise ValueError(f"{len(missing)} videos (e.g. {missing[:3]}) are not in {video_dir}; "
                         "pass --default-size WxH to convert their boxes with an assumed size")
    return out


def _pixels(box: Sequence[float], size: VideoSize) -> List[float]:
    x1, y1, x2, y2 = box
    w, h = size.width, size.height
    return [round(x1 * w, 2), round(y1 * h, 2), round(x2 * w, 2), round(y2 * h, 2)]


def build_pairs(ann: AvaAnnotations, runs: Dict[Label, List[Run]], order: Sequence[Label], *,
                sizes: Dict[str, VideoSize], seed: int = UPSTREAM_SEED, time_offset: int = 0,
                excluded: Set[Tuple[str, int]] = frozenset()) -> List[Dict[str, Any]]:
    """One pair per run of each label in ``order`` (relocnet/data/pairs.py format)."""
    rng = np.random.RandomState(seed)
    who = persons_by_label(ann.labels, excluded)
    blocked: Dict[str, List[int]] = defaultdict(list)
    for video, second in sorted(excluded):
        blocked[video].append(second)
    lo, hi = SECOND_RANGE
    pairs = []
    for lab in order:
        cands = runs.get(lab, [])
        for q in cands:
            r = cands[rng.choice(len(cands))]
            start, end = reference_span(r, lo=lo, hi=hi, blocked=blocked.get(r.video, ()))
            qs, rs = sizes[q.video], sizes[r.video]
            gt = {t: [_pixels(ann.boxes[(r.video, t, p)], rs) for p in who[(lab, r.video, t)]]
                  for t in range(start, end) if (lab, r.video, t) in who}
            off = time_offset
            pairs.append({
                "pair_id": f"{q.video}_{q.person}_{q.first}",
                "label": label_str(lab),
                "query": {"video": qs.path, "start": q.first - off, "end": q.last + 1 - off,
                          "boxes": {t - off: _pixels(ann.boxes[(q.video, t, q.person)], qs)
                                    for t in range(q.first, q.last + 1)}},
                "reference": {"video": rs.path, "start": start - off, "end": end - off},
                "segments": [[s - off, e - off] for s, e in seconds_to_segments(sorted(gt))],
                "boxes": {t - off: b for t, b in gt.items()},
                "source": {"query_person": q.person, "reference_person": r.person,
                           "reference_run": [r.first, r.last + 1]},
            })
    return pairs


def upstream_box_to_xyxy(box: Sequence[float]) -> Tuple[float, float, float, float]:
    """Upstream's normalized [y1, x1, y2, x2] -> (x1, y1, x2, y2)."""
    y1, x1, y2, x2 = box
    return (x1, y1, x2, y2)


def from_upstream_pairs(items: Sequence[Any], *, split: str, sizes: Dict[str, VideoSize],
                        time_offset: int = 0) -> List[Dict[str, Any]]:
    """Pairs from upstream's own val/test JSON (gen_subsets.py): ``[(query, ref), ...]``."""
    pairs = []
    for i, (q, r) in enumerate(items):
        qs, rs, off = sizes[q["id"]], sizes[r["id"]], time_offset
        qbox = {t - off: _pixels(upstream_box_to_xyxy(b), qs)
                for t, b in zip(q["frames"], q["boxes"])}
        gt = {r["start"] + k - off: [_pixels(upstream_box_to_xyxy(b), rs) for b in boxes]
              for k, boxes in enumerate(r["gt"]) if boxes}
        pairs.append({
            "pair_id": f"{split}_{i:05d}", "label": label_str(sorted(q["label"])),
            "query": {"video": qs.path, "start": min(q["frames"]) - off,
                      "end": max(q["frames"]) + 1 - off, "boxes": qbox},
            "reference": {"video": rs.path, "start": r["start"] - off, "end": r["end"] - off},
            "segments": seconds_to_segments(sorted(gt)), "boxes": gt,
        })
    return pairs


def prepare_ava_search(csv_dir: str, val_test: str, output: str, *, seed: int = UPSTREAM_SEED,
                       video_dir: Optional[str] = None,
                       default_size: Optional[Tuple[int, int]] = None, time_offset: int = 0,
                       upstream_dir: Optional[str] = None, force: bool = False,
                       splits: Sequence[str] = SPLITS,
                       probe: Optional[Callable[[str], Any]] = None) -> Dict[str, Dict]:
    """Write OUTPUT/pairs/{split}.json; returns a summary per split.

    ``upstream_dir`` (optional) holds upstream's own val.json/test.json: those splits are then
    converted from it (upstream's exact pairs) instead of drawn again.
    """
    test_labels, val_labels = load_val_test(val_test)
    held_out = set(test_labels) | set(val_labels)
    video_dir = video_dir or os.path.join(output, "videos")
    pairs_dir = os.path.join(output, "pairs")
    cache: Dict[str, AvaAnnotations] = {}
    outputs, summary = {}, {}
    for split in splits:
        csv_split = "train" if split == "train" else "val"
        if csv_split not in cache:
            cache[csv_split] = read_ava_csv(os.path.join(csv_dir, CSV_FILES[csv_split]))
        ann = cache[csv_split]
        excluded: Set[Tuple[str, int]] = set()
        upstream = os.path.join(upstream_dir, f"{split}.json") if upstream_dir else None
        if split != "train" and upstream:
            with open(upstream, encoding="utf-8") as f:
                items = json.load(f)
            vids = [v for q, r in items for v in (q["id"], r["id"])]
            sizes = video_sizes(vids, video_dir=video_dir, pairs_dir=pairs_dir, root_dir=output,
                                default_size=default_size, probe=probe)
            pairs = from_upstream_pairs(items, split=split, sizes=sizes, time_offset=time_offset)
        else:
            if split == "train":
                excluded = {(v, t) for (v, t, _), lab in ann.labels.items() if lab in held_out}
                runs = find_runs(ann.labels, drop=held_out, excluded=excluded)
                order = sorted(runs)
            else:
                wanted = val_labels if split == "val" else test_labels
                runs = find_runs(ann.labels, keep=set(wanted))
                order = [lab for lab in wanted if lab in runs]
            vids = sorted({r.video for lab in order for r in runs[lab]})
            sizes = video_sizes(vids, video_dir=video_dir, pairs_dir=pairs_dir, root_dir=output,
                                default_size=default_size, probe=probe)
            pairs = build_pairs(ann, runs, order, sizes=sizes, seed=seed,
                                time_offset=time_offset, excluded=excluded)
        used = sorted(set(vids))
        path = os.path.join(pairs_dir, f"{split}.json")
        outputs[path] = {
            "task": "spatio_temporal", "pairs": pairs, "benchmark": "ava_search", "split": split,
            "seed": seed, "time_offset": time_offset,
            "source": "upstream" if (split != "train" and upstream) else "csv",
            "videos": {v: {"width": sizes[v].width, "height": sizes[v].height,
                           "size_source": sizes[v].source} for v in used},
        }
        summary[split] = {"path": path, "pairs": len(pairs),
                          "labels": len({p["label"] for p in pairs}), "videos": len(used),
                          "excluded_seconds": len(excluded)}
    for path, status in write_pair_files(outputs, force=force).items():
        summary[os.path.splitext(os.path.basename(path))[0]]["status"] = status
    return summary
