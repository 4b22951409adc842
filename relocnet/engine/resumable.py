"""Training that is deterministic for a fixed SEED and resumes bitwise exactly after a kill.

- Every random draw derives from the seed: the training loader yields *sample positions*
  p = 0, 1, 2, ... (:class:`PositionSampler`); position p is record ``perm_e[p mod N]`` of the
  permutation drawn for epoch e = p // N from (seed, e), mapped with its own generator drawn from
  (seed, p) (:class:`PositionedPairs`), whichever DataLoader worker maps it. Before each
  iteration i, torch / numpy / random are seeded from (seed, i) (:class:`SeedEachIteration`), so
  what the model draws (RPN sampling, dropout) does not depend on the history either.
- Resuming from iteration k restarts the positions at k x IMS_PER_BATCH: the batches after
  the checkpoint are the ones a straight run would have drawn, and nothing is replayed.
- Checkpoints (and ``last_checkpoint``) are written to a temp file and renamed
  (:class:`AtomicCheckpointer`); a checkpoint that cannot be read is an error naming the file,
  never a silent "resumed" run. ``metrics.json`` is rewritten atomically at each write and cut
  back to the iterations before the resume point, so a resumed run's log has no repeated or
  half-written lines.
"""
import itertools
import json
import os
import random

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter, get_event_storage

from ..utils.fileio import atomic_open, atomic_path

__all__ = ["resolve_seed", "derived_seed", "PositionSampler", "PositionedPairs", "SeedEachIteration",
           "AtomicCheckpointer", "CheckpointError", "trim_metrics", "AtomicJSONWriter",
           "atomic_writers"]


def resolve_seed(cfg) -> int:
    """cfg.SEED, or (SEED < 0) a fresh one; the Trainer stores it in its checkpoints."""
    return int(cfg.SEED) if cfg.SEED >= 0 else int.from_bytes(os.urandom(4), "little")


def derived_seed(*key: int) -> int:
    """A 32-bit seed for torch / random from integers (numpy's SeedSequence mixing)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


class PositionSampler(torch.utils.data.Sampler):
    """This rank's global sample positions ``start + rank, start + rank + world, ...``;
    ``start`` may be set until the loader is iterated (the Trainer sets it on resume)."""

    def __init__(self, start: int = 0):
        self.start = start
        self.rank, self.world = comm.get_rank(), comm.get_world_size()

    def __iter__(self):
        return itertools.count(self.start + self.rank, self.world)


class PositionedPairs(torch.utils.data.Dataset):
    """Sample position -> the mapped record drawn for it (see the module docstring)."""

    def __init__(self, records, mapper, seed: int):
        self.records, self.mapper, self.seed = list(records), mapper, seed
        self._epoch, self._perm = None, None

    def __len__(self):
        return len(self.records)

    def __getitem__(self, position: int):
        epoch, k = divmod(int(position), len(self.records))
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            self._epoch, self._perm = epoch, rng.permutation(len(self.records))
        record = self.records[int(self._perm[k])]
        return self.mapper(record, rng=np.random.default_rng([self.seed, 1, int(position)]))


class SeedEachIteration(HookBase):
    """Seeds torch, numpy and random from (seed, iteration) before every step; its state (the
    seed) is saved with the trainer's checkpoints and given back to the data on resume."""

    def __init__(self, data: PositionedPairs):
        self.data = data

    def before_step(self):
        s = derived_seed(self.data.seed, 2, self.trainer.iter)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)

    def state_dict(self):
        return {"seed": self.data.seed}

    def load_state_dict(self, state_dict):
        self.data.seed = int(state_dict["seed"])


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read."""


class AtomicCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose files appear complete or not at all."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {os.path.join(self.save_dir, basename)}")
        with atomic_path(os.path.join(self.save_dir, basename)) as tmp:
            torch.save(data, tmp)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    def _load_file(self, f: str):
        try:
            return super()._load_file(f)
        except Exception as exc:  # torch.load / pickle raise many types for a damaged file
            first = (str(exc).splitlines() or [""])[0][:160]
            raise CheckpointError(
                f"checkpoint {f} cannot be read ({type(exc).__name__}: {first}): it is damaged "
                "(written by a run killed while saving, before relocnet wrote checkpoints "
                "atomically?); delete it and point last_checkpoint at an earlier one, or train "
                "without --resume") from None


def trim_metrics(path: str, start_iter: int) -> None:
    """Keep the complete lines of ``metrics.json`` with an iteration before ``start_iter``."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                if line.endswith("\n") and json.loads(line).get("iteration", -1) < start_iter:
                    kept.append(line)
            except (ValueError, AttributeError):
                pass
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(kept)


class AtomicJSONWriter(JSONWriter):
    """detectron2's JSONWriter (metrics.json, one JSON object per line) that replaces the file
    with the old lines plus the new ones at each write: a kill never leaves half a line. The
    file is a line per write period, so rewriting it costs nothing next to an iteration."""

    def __init__(self, json_file: str, window_size: int = 20):
        self._path, self._window_size, self._last_write = json_file, window_size, -1

    def write(self) -> None:
        storage = get_event_storage()
        to_save: dict = {}
        for k, (v, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:  # scalars not written yet
                to_save.setdefault(it, {})[k] = v
        if not to_save:
            return
        self._last_write = max(to_save)
        old = ""
        if os.path.isfile(self._path):
            with open(self._path, encoding="utf-8") as f:
                old = f.read()
        lines = [json.dumps(dict(v, iteration=it), sort_keys=True) + "\n"
                 for it, v in to_save.items()]
        with atomic_open(self._path, "w", encoding="utf-8") as f:
            f.write(old + "".join(lines))

    def close(self) -> None:
        pass


def atomic_writers(writers):
    """default_writers with JSONWriter replaced by AtomicJSONWriter."""
    out = []
    for w in writers:
        if isinstance(w, JSONWriter) and not isinstance(w, AtomicJSONWriter):
            path = w._file_handle.name
            w.close()
            w = AtomicJSONWriter(path, w._window_size)
        out.append(w)
    return out
