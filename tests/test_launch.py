"""Training scales out the detectron2 way: 2 processes started by ``launch`` (gloo on CPU) run 2
iterations of the Trainer and end with identical weights."""
import os

import torch
from detectron2.engine import launch
from detectron2.utils import comm

from test_training import _cfg, data  # noqa: F401  (the module fixture: pairs and a video folder)


def _worker(data_dir: str, out: str) -> None:
    """One launched process: register the datasets, train, save this rank's parameters."""
    from relocnet.data.datasets import register_reloc_pairs
    from relocnet.data.self_supervised import register_video_folder
    from relocnet.engine import Trainer

    torch.set_num_threads(1)
    register_reloc_pairs("test_train_pairs", os.path.join(data_dir, "pairs.json"),
                         task="temporal", evaluator_type="reloc_temporal")
    register_video_folder("test_train_folder", os.path.join(data_dir, "folder"))
    cfg = _cfg(out)
    cfg.SOLVER.MAX_ITER, cfg.SOLVER.CHECKPOINT_PERIOD = 2, 100
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.save(params, os.path.join(out, f"rank{comm.get_rank()}_of_{comm.get_world_size()}.pth"))


def test_two_processes_end_with_identical_weights(data, tmp_path):  # noqa: F811
    from relocnet.engine import Trainer

    launch(_worker, 2, dist_url="auto", args=(str(data), str(tmp_path)))
    a = torch.load(tmp_path / "rank0_of_2.pth")
    b = torch.load(tmp_path / "rank1_of_2.pth")
    assert a.keys() == b.keys() and len(a) > 10
    assert all(torch.equal(a[k], b[k]) for k in a)  # gradients are all-reduced every step
    start = dict(Trainer.build_model(_cfg(tmp_path / "init")).named_parameters())
    assert any(not torch.equal(a[k], start[k]) for k in a)  # and they did train
