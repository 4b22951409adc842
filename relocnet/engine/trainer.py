"""The relocnet Trainer: detectron2's DefaultTrainer with pair loaders, AdamW and our evaluators."""
import contextlib
import os
import weakref

import torch
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as _defaults
from detectron2.utils import comm
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..data.mapper import RelocPairMapper
from ..data.self_supervised import SelfSupervisedPairMapper
from ..evaluation import build_reloc_evaluator
from ..modeling.meta_arch import model_task
from ..utils.fileio import exclusive_lock
from .resumable import (AtomicCheckpointer, PositionedPairs, PositionSampler, SeedEachIteration,
                        atomic_writers, derived_seed, resolve_seed, trim_metrics)

__all__ = ["Trainer"]


def index_labels(dataset, num_classes: int):
    """Give each labelled record ``label_index`` (its label's rank among the dataset's sorted
    labels; -1 for unlabelled ones) for the auxiliary classification loss; returns the labels."""
    labels = sorted({d["label"] for d in dataset if d.get("label") and not d.get("self_supervised")})
    if len(labels) > num_classes:
        raise ValueError(f"DATASETS.TRAIN has {len(labels)} labels but MODEL.RELOC.AUX_CLASSES is "
                         f"{num_classes}")
    index = {label: i for i, label in enumerate(labels)}
    for d in dataset:
        d["label_index"] = -1 if d.get("self_supervised") else index.get(d.get("label"), -1)
    return labels


class _TrainMapper:
    """Labelled pair records -> RelocPairMapper; video-folder records -> SelfSupervisedPairMapper."""

    def __init__(self, cfg):
        self.task = model_task(cfg)
        self.pairs = RelocPairMapper(cfg, is_train=True, task=self.task)
        self.self_supervised = SelfSupervisedPairMapper(cfg)

    def __call__(self, record, rng=None):
        if record.get("self_supervised"):
            if self.task != "temporal":
                raise ValueError(f"{record['pair_id']}: video-folder datasets give temporal pairs "
                                 f"(no actor boxes); train a temporal model on them")
            return self.self_supervised(record, rng=rng)
        return self.pairs(record, rng=rng)


@contextlib.contextmanager
def _ddp_on_cpu():
    """DefaultTrainer wraps the model with ``create_ddp_model(model, broadcast_buffers=False)``,
    which names the local GPU in ``device_ids``; DistributedDataParallel refuses ``device_ids`` for
    a CPU module, so on CPU (gloo, ``launch`` without GPUs) it is called with ``device_ids=None``."""
    create = _defaults.create_ddp_model

    def create_cpu_aware(model, **kwargs):
        if next(model.parameters()).device.type == "cpu":
            kwargs.setdefault("device_ids", None)
        return create(model, **kwargs)

    _defaults.create_ddp_model = create_cpu_aware
    try:
        yield
    finally:
        _defaults.create_ddp_model = create


class Trainer(DefaultTrainer):
    """Pairs in, losses out; evaluation with the benchmark's own metric. Deterministic for a
    fixed SEED, resumes exactly, writes checkpoints atomically (see engine/resumable.py). Scales
    out with detectron2's ``launch`` (NCCL on GPUs, gloo on CPU)."""

    def __init__(self, cfg):
        with _ddp_on_cpu():
            super().__init__(cfg)

    @classmethod
    def build_model(cls, cfg):
        """The model, initialized from (SEED, 3) whatever the caller drew before."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(resolve_seed(cfg), 3))
            return super().build_model(cfg)

    @classmethod
    def build_train_loader(cls, cfg):
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
        if cfg.MODEL.RELOC.AUX_LOSS_WEIGHT > 0:
            index_labels(dataset, cfg.MODEL.RELOC.AUX_CLASSES)
        data = PositionedPairs(dataset, _TrainMapper(cfg), resolve_seed(cfg))
        sampler = PositionSampler()
        loader = build_detection_train_loader(
            data,
            mapper=None,
            sampler=sampler,
            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            aspect_ratio_grouping=False,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        )
        loader.positions = (data, sampler)  # the Trainer moves them on resume
        return loader

    def build_hooks(self):
        self.checkpointer = AtomicCheckpointer(self._trainer.model, self.cfg.OUTPUT_DIR,
                                               trainer=weakref.proxy(self))
        data, _ = self._trainer.data_loader.positions
        return [SeedEachIteration(data)] + super().build_hooks()

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        _, sampler = self._trainer.data_loader.positions
        sampler.start = self.start_iter * self.cfg.SOLVER.IMS_PER_BATCH

    def train(self):
        """DefaultTrainer.train, holding OUTPUT_DIR/.train.lock: a second run on the same
        OUTPUT_DIR is refused (LockedError) before it writes anything."""
        if not comm.is_main_process():
            return super().train()
        out = self.cfg.OUTPUT_DIR
        os.makedirs(out, exist_ok=True)
        with exclusive_lock(os.path.join(out, ".train.lock"), f"OUTPUT_DIR {out}"):
            if self.start_iter > 0:
                trim_metrics(os.path.join(out, "metrics.json"), self.start_iter)
            return super().train()

    def build_writers(self):
        return atomic_writers(super().build_writers())

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        dataset = get_detection_dataset_dicts(dataset_name, filter_empty=False)
        mapper = RelocPairMapper(cfg, is_train=False, task=model_task(cfg))
        return build_detection_test_loader(
            dataset, mapper=mapper, num_workers=cfg.DATALOADER.NUM_WORKERS
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The dataset's evaluator; predictions go to OUTPUT_DIR/inference/<dataset>."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_reloc_evaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        """AdamW with detectron2's parameter groups and clipping: the paper's Adam (§4.1) when
        SOLVER.WEIGHT_DECAY is 0, as in the benchmark configs; decoupled weight decay otherwise."""
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )
