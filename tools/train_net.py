#!/usr/bin/env python
"""Train or evaluate a relocnet model (detectron2's train_net shape).

    python tools/train_net.py --config-file configs/synthreloc/<cfg>.yaml
    python tools/train_net.py --config-file <cfg> --resume
    python tools/train_net.py --config-file <cfg> --eval-only MODEL.WEIGHTS model_final.pth
    python tools/train_net.py --config-file <cfg> --num-gpus 8
"""
import detectron2.utils.comm as comm
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results

import relocnet  # noqa: F401  (registers models and datasets)
from relocnet.engine import Trainer, setup_cfg


def main(args):
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
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
