"""Detectron2 registration of the re-localization benchmarks, and helpers for writing them.

Every benchmark is a set of pair files (format: relocnet/data/pairs.py) under one root,
``$DETECTRON2_DATASETS`` (default ``datasets``)::

    synthreloc/pairs/{temporal,spatio_temporal}_{train,val,test}.json
    activitynet_search/pairs/{train,val,test}.json
    ava_search/pairs/{train,val,test}.json

Registration is lazy: a pair file is read (and must exist) only when the dataset is loaded.
Importing this module registers every split under the default root; call ``register_all(root)``
to register them under another root (a later call replaces the earlier registration).
"""
import argparse
import copy
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .pairs import (TASKS, PairFileError, load_pairs, resolve_video, validate_pairs,
                    write_json_atomic)

__all__ = ["RelocSplit", "SPLITS", "EVALUATOR_TYPES", "register_reloc_pairs", "register_all",
           "load_reloc_pairs", "datasets_root", "video_index", "find_video", "video_entry",
           "run_prepare", "prepare_parser", "write_pair_files"]

EVALUATOR_TYPES = {"temporal": "relocnet_temporal", "spatio_temporal": "relocnet_spatio_temporal"}
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclass(frozen=True)
class RelocSplit:
    """One registered split: its name, pair file (relative to the root) and task."""

    name: str
    pair_file: str
    task: str
    prepare: str  # the command that writes the pair file, with {root} for the datasets root


_PREPARE_SYNTH = "python datasets/prepare_synthetic.py --output {root}/synthreloc --seed 0"
_PREPARE_ANET = ("python datasets/prepare_activitynet_search.py --benchmark-dir "
                 "../shared/benchmarks/activitynet_search --output {root}/activitynet_search")
_PREPARE_AVA = ("python datasets/prepare_ava_search.py --csv-dir AVA_CSV_DIR --val-test "
                "../shared/benchmarks/ava_search/val_test.json --output {root}/ava_search")

SPLITS: List[RelocSplit] = (
    [RelocSplit(f"synthreloc_{task}_{split}", f"synthreloc/pairs/{task}_{split}.json", task,
                _PREPARE_SYNTH)
     for task in TASKS for split in ("train", "val", "test")]
    + [RelocSplit(f"activitynet_search_{split}", f"activitynet_search/pairs/{split}.json",
                  "temporal", _PREPARE_ANET) for split in ("train", "val", "test")]
    + [RelocSplit(f"ava_search_{split}", f"ava_search/pairs/{split}.json", "spatio_temporal",
                  _PREPARE_AVA) for split in ("train", "val", "test")]
)


def datasets_root() -> str:
    """The datasets root: ``$DETECTRON2_DATASETS``, else ``datasets`` (relative to the cwd)."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def load_reloc_pairs(pair_file: str, *, task: str, dataset: str,
                     prepare: str = "") -> List[Dict[str, Any]]:
    """Read a pair file into dataset records: videos resolved to absolute paths, plus
    ``task`` and ``dataset`` keys.

    Raises:
        FileNotFoundError: the pair file is missing (names it and the command that creates it).
        PairFileError: the pair file is malformed, or holds another task.
    """
    if not os.path.isfile(pair_file):
        hint = f" Create it with: {prepare}" if prepare else ""
        raise FileNotFoundError(f"Dataset '{dataset}': pair file {pair_file} does not exist.{hint}")
    data = load_pairs(pair_file)
    if data["task"] != task:
        raise PairFileError(f"{pair_file}: task is {data['task']!r}, but dataset '{dataset}' "
                            f"is registered as {task!r}")
    records = []
    for pair in data["pairs"]:
        rec = copy.deepcopy(pair)
        for side in ("query", "reference"):
            rec[side]["video"] = os.path.abspath(resolve_video(pair_file, rec[side]["video"]))
        rec["task"] = task
        rec["dataset"] = dataset
        records.append(rec)
    return records


def register_reloc_pairs(name: str, pair_file: str, *, task: str, evaluator_type: str,
                         prepare: str = "") -> None:
    """Register one pair file as a detectron2 dataset (DatasetCatalog + MetadataCatalog).

    Registering a name again replaces the earlier registration.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    pair_file = os.path.abspath(pair_file)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_reloc_pairs(pair_file, task=task, dataset=name,
                                                           prepare=prepare))
    MetadataCatalog.get(name).set(pair_file=pair_file, task=task, evaluator_type=evaluator_type,
                                  video_root=os.path.dirname(pair_file))


def register_all(root: Optional[str] = None, splits: Iterable[RelocSplit] = SPLITS) -> None:
    """Register every benchmark split under ``root`` (default: ``datasets_root()``), and the
    built-in self-supervised video sets (relocnet/data/self_supervised.py)."""
    from .self_supervised import register_builtin_video_sets

    root = datasets_root() if root is None else root
    for s in splits:
        register_reloc_pairs(s.name, os.path.join(root, s.pair_file), task=s.task,
                             evaluator_type=EVALUATOR_TYPES[s.task],
                             prepare=s.prepare.format(root=root))
    register_builtin_video_sets(root)


# ------------------------------------------------------------------ helpers for prepare scripts
def video_index(video_dir: Optional[str]) -> Dict[str, str]:
    """Map file stem -> absolute path for the video files directly inside ``video_dir``."""
    if not video_dir or not os.path.isdir(video_dir):
        return {}
    out = {}
    for fname in sorted(os.listdir(video_dir)):
        stem, ext = os.path.splitext(fname)
        if ext.lower() in VIDEO_EXTENSIONS and stem not in out:
            out[stem] = os.path.abspath(os.path.join(video_dir, fname))
    return out


def find_video(index: Dict[str, str], stems: Sequence[str]) -> Optional[str]:
    """The first of ``stems`` present in ``index`` (see video_index), or None."""
    for stem in stems:
        if stem in index:
            return index[stem]
    return None


def video_entry(path: str, *, pairs_dir: str, root_dir: str) -> str:
    """A video path as a pair file stores it: relative to ``pairs_dir`` when the video lies
    under ``root_dir`` (the benchmark folder, so the folder can move), else absolute."""
    path, root_dir = os.path.abspath(path), os.path.abspath(root_dir)
    if os.path.commonpath([path, root_dir]) == root_dir:
        return os.path.relpath(path, os.path.abspath(pairs_dir))
    return path


def _canonical(data: Any) -> Any:
    return json.loads(json.dumps(data))


def write_pair_files(outputs: Dict[str, Dict[str, Any]], *, force: bool = False) -> Dict[str, str]:
    """Validate and write several pair files, each given as ``{path: {"task", "pairs", ...}}``.

    Pair files are written once: a file that exists with the same content is left as it is
    ("unchanged"); one that differs is refused (FileExistsError, nothing written) unless
    ``force``. Every file is checked before any is written. Returns ``{path: status}``.
    """
    validated, status = {}, {}
    for path, data in outputs.items():
        new = _canonical(validate_pairs(data, path))
        validated[path] = new
        if not os.path.exists(path):
            status[path] = "written"
            continue
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
        status[path] = "unchanged" if old == new else ("overwritten" if force else "refused")
    refused = [p for p, s in status.items() if s == "refused"]
    if refused:
        raise FileExistsError(
            f"{', '.join(refused)}: exists and differs from what this run would write. Pair "
            "files are written once so that every run and every method sees the same pairs; "
            "pass --force to overwrite.")
    for path, s in status.items():
        if s != "unchanged":  # indented for reading, except very large files
            indent = 1 if len(validated[path]["pairs"]) <= 10000 else None
            write_json_atomic(path, validated[path], indent=indent)
    return status


def prepare_parser(description: str, *, seed: int, video_help: str) -> argparse.ArgumentParser:
    """The arguments every prepare_*.py script shares: --output, --seed, --video-dir,
    --splits, --force."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--output", required=True, help="writes OUTPUT/pairs/{split}.json")
    ap.add_argument("--seed", type=int, default=seed,
                    help=f"numpy seed of the reference choice (upstream: {seed})")
    ap.add_argument("--video-dir", default=None, help=video_help + " (default OUTPUT/videos)")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"],
                    choices=["train", "val", "test"])
    ap.add_argument("--force", action="store_true",
                    help="overwrite existing pair files that differ")
    return ap


def run_prepare(prepare: Callable[[], Dict[str, Dict[str, Any]]], line: str) -> int:
    """Run a prepare function for a CLI: print one ``line.format(split=..., **summary)`` per
    split and the summary as JSON on the last line; errors -> message on stderr, exit code 1."""
    try:
        summary = prepare()
    except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: VideoDecodeError
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, s in summary.items():
        print(line.format(split=split, **s))
    print(json.dumps(summary))
    return 0


register_all()
