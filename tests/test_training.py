"""Training with a fixed SEED is deterministic (whatever the number of loader workers), and a run
killed at any point and resumed ends bitwise identical to a straight run; checkpoints are
written atomically and a damaged one is an error naming it. A tiny temporal model, a few
iterations, labelled pairs and a self-supervised video folder."""
import json
import os
import sys

import pytest
import torch

from relocnet.data.datasets import register_reloc_pairs
from relocnet.data.pairs import save_pairs
from relocnet.data.self_supervised import register_video_folder
from relocnet.engine import Trainer
from relocnet.engine.resumable import CheckpointError
from relocnet.utils.fileio import LockedError, exclusive_lock
from test_relocalize import make_video, tiny_cfg

ITERS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    (d / "folder").mkdir()
    for i in range(2):
        make_video(d / "folder" / f"v{i}.mp4", 6, 10 + i, fps=4)
    make_video(d / "q.mp4", 3, 20, fps=4)
    make_video(d / "r.mp4", 8, 21, fps=4)
    pairs = [{"pair_id": f"p{i}", "label": "x", "query": {"video": "q.mp4", "start": 0, "end": 3},
              "reference": {"video": "r.mp4", "start": 0, "end": 8}, "segments": [[i, i + 3]]}
             for i in range(3)]
    save_pairs(str(d / "pairs.json"), "temporal", pairs)
    register_reloc_pairs("test_train_pairs", str(d / "pairs.json"), task="temporal",
                         evaluator_type="reloc_temporal")
    register_video_folder("test_train_folder", str(d / "folder"))
    return d


def _cfg(out, workers=0):
    cfg = tiny_cfg("RelocTemporal")
    cfg.DATASETS.TRAIN = ("test_train_pairs", "test_train_folder")
    cfg.DATASETS.TEST = ()
    cfg.INPUT.VIDEO.COLOR_JITTER, cfg.INPUT.VIDEO.HFLIP_PROB = 0.3, 0.5
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD = ITERS, 2
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.STEPS = 2, 1e-3, ()
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.SEED = 7
    cfg.OUTPUT_DIR = str(out)
    return cfg


class _Killed(Exception):
    pass


def _train(cfg, resume=False, kill_after=None):
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=resume)
    if kill_after is not None:
        def after_step():
            if trainer.iter == kill_after:
                raise _Killed()
        trainer._hooks[-1].after_step = after_step  # the last hook: after the checkpointer
    trainer.train()
    return torch.load(os.path.join(cfg.OUTPUT_DIR, "model_final.pth"), weights_only=False)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fixed_seed_is_deterministic_and_a_killed_run_resumes_exactly(data, tmp_path):
    straight = _train(_cfg(tmp_path / "a"))
    assert straight["iteration"] == ITERS - 1
    again = _train(_cfg(tmp_path / "b", workers=1))  # another worker count: the same draws
    assert _same(straight["model"], again["model"])
    other = _cfg(tmp_path / "c")
    other.SEED = 8
    assert not _same(straight["model"], _train(other)["model"])

    cfg = _cfg(tmp_path / "k")
    with pytest.raises(_Killed):  # killed after iteration 4; the last checkpoint is iteration 3
        _train(cfg, kill_after=4)
    assert open(tmp_path / "k" / "last_checkpoint").read() == "model_0000003.pth"
    resumed = _train(cfg, resume=True)
    assert _same(straight["model"], resumed["model"])
    opt = [c["trainer"]["_trainer"]["optimizer"]["state"] for c in (straight, resumed)]
    assert all(_same(opt[0][k], opt[1][k]) for k in opt[0])  # Adam's moments too
    iters = [json.loads(line)["iteration"] for line in open(tmp_path / "k" / "metrics.json")]
    assert iters == sorted(set(iters))  # no iteration logged twice
    assert not [f for f in os.listdir(tmp_path / "k") if f.startswith(".tmp-")]


def test_checkpoints_are_atomic_and_a_damaged_one_is_named(data, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path / "a")
    _train(cfg)
    final = tmp_path / "a" / "model_final.pth"
    good = final.read_bytes()
    trainer = Trainer(cfg)

    def dies_while_writing(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill while saving

    with monkeypatch.context() as m:
        m.setattr(torch, "save", dies_while_writing)
        with pytest.raises(KeyboardInterrupt):
            trainer.checkpointer.save("model_final")
    assert final.read_bytes() == good and not list((tmp_path / "a").glob(".tmp-*"))
    with exclusive_lock(str(tmp_path / "a" / ".train.lock"), "the other run"):
        with pytest.raises(LockedError, match="in use by another running process"):
            trainer.train()  # a second run on one OUTPUT_DIR is refused before it writes
    final.write_bytes(good[: len(good) // 2])  # e.g. written by an older, non-atomic version
    with pytest.raises(CheckpointError, match="model_final.pth cannot be read"):
        Trainer(cfg).resume_or_load(resume=True)


def test_cache_frames_fills_pairs_and_video_folders(data, tmp_path, capsys):
    """tools/cache_frames.py on a config whose DATASETS.TRAIN mixes labelled pairs and a
    video folder (the self-supervised records have no 'query': KeyError before)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "relocnet_tools_cache_frames", os.path.join(os.path.dirname(__file__), "..", "tools",
                                                    "cache_frames.py"))
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # the pool's (forked) workers unpickle its functions by name
    spec.loader.exec_module(tool)
    cache = tmp_path / "frames"
    argv = ["--config-file", "configs/synthreloc/relocnet_R18-L3D_cpu_synthreloc_temporal.yaml",
            "--workers", "1", "DATASETS.TRAIN", '("test_train_pairs", "test_train_folder")',
            "DATASETS.TEST", "()", "INPUT.VIDEO.DECODE_CACHE", str(cache)]
    assert tool.main(argv) == 0
    assert "4 videos at" in capsys.readouterr().out  # q, r and the folder's two
    assert len([f for f in os.listdir(cache) if f.endswith(".npy")]) == 4
    good = (data / "q.mp4").read_bytes()
    (data / "q.mp4").write_bytes(b"not a video")  # one bad video: named, the others cached
    try:
        assert tool.main(argv) == 1
    finally:
        (data / "q.mp4").write_bytes(good)
    assert "q.mp4: not a video" in capsys.readouterr().err
