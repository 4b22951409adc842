#!/usr/bin/env python
"""Train the pose head of the SynthReloc models on rendered training frames.

    python tools/train_pose.py [--tiers easy standard] [--preset small] [--per-second 4] \\
        [--random-clips 400] [--random-seconds 4] [--folded-clips 2000] [--bent-clips 2000] \\
        [--raised-clips 2000] [--channels 192] [--iterations 20000] [--no-mirror] \\
        [--workers 1] [--device cpu] [--precision fp32] [--output output/pose_head]

Frames of the *training* split's plans of each tier (their classes only; nothing is read from
disk) and of clips of one actor in random poses (``random_pose``: every joint drifts on its own,
so the head meets the joints in combinations no training class has) and of random poses with
forearms folded in front of the body (``random_pose_folded``: the training classes fold them too
rarely for the head to learn the pose, docs/RESULTS.md) and with arms half bent in front of the body
(``random_pose_bent``: the clap's and the punches' elbows, session 11) and with arms raised and
the forearm swinging (``random_pose_raised``: the wave's, session 16) are rendered
with every actor's box, joint angles and pelvis position (relocnet/engine/pose_training.py);
the frozen EfficientNet-Lite0 runs once per frame and the head trains on the cache. Also scores
the head on frames of the validation split (held-out classes) and of new clips of three kinds of
random poses.

``--workers N`` renders in N processes (exactly the frames one process renders); ``--device cuda``
computes the trunk's features and trains the head on a GPU (the same recipe; GPU arithmetic makes
another head than the CPU's, as another training seed would). ``--precision bf16`` trains the
head in bfloat16 autocast (2.5x faster per step on CPUs with AMX / AVX512-BF16; slower where
bfloat16 is emulated). The shipped head: this recipe in 3.8 min on an H200 with ``--workers 15
--device cuda``; with ``--workers 2 --precision bf16`` it takes 24 min on 2 CPU cores with AMX
(docs/RESULTS.md, sessions 16 and 17).
Writes ``pose_head.pth`` (load it with MODEL.RELOC.POSE.WEIGHTS) and ``metrics.json``.
"""
import argparse
import json
import logging
import os
import sys
import time

import numpy as np
import torch

from relocnet.data.synthetic.actions import (RANDOM_POSE, RANDOM_POSE_BENT, RANDOM_POSE_FOLDED,
                                             RANDOM_POSE_RAISED)
from relocnet.data.synthetic.plan import PRESETS, TIERS, plan_clips, plan_split
from relocnet.engine.pose_training import (evaluate_pose_head, render_pose_samples,
                                           train_pose_head, trunk_features, with_mirror_images)
from relocnet.modeling.backbone.efficientnet import EfficientNetLiteBackbone
from relocnet.modeling.backbone.pose import PoseHead
from relocnet.utils.fileio import atomic_path, write_json_atomic

SIZE = (128, 160)  # the SynthReloc configs' INPUT.VIDEO.HEIGHT / WIDTH
MEAN = STD = [127.5] * 3  # EfficientNet-Lite inputs in [-1, 1]
CLIP_S = 2  # folded-pose and scoring clips: the shortest clip plan_clips makes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiers", nargs="+", default=["easy", "standard"], choices=sorted(TIERS))
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--per-second", type=int, default=4, help="frames rendered per second of video")
    ap.add_argument("--random-clips", type=int, default=400,
                    help="also this many clips of one actor in random poses (half with large, half "
                         "with small actors)")
    ap.add_argument("--random-seconds", type=int, default=4, help="length of a random-pose clip")
    ap.add_argument("--folded-clips", type=int, default=2000,
                    help="also this many clips of 2 s of random poses with folded forearms (half "
                         "with large, half with small actors)")
    ap.add_argument("--bent-clips", type=int, default=2000,
                    help="also this many clips of 2 s of random poses with half-bent arms in "
                         "front of the body (half with large, half with small actors)")
    ap.add_argument("--raised-clips", type=int, default=2000,
                    help="also this many clips of 2 s of random poses with raised arms whose "
                         "forearms swing (half with large, half with small actors)")
    ap.add_argument("--iterations", type=int, default=20000)
    ap.add_argument("--no-mirror", action="store_true",
                    help="do not add the mirror image of every training frame")
    ap.add_argument("--channels", type=int, default=192, help="MODEL.RELOC.POSE.CHANNELS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes that render frames")
    ap.add_argument("--device", default="cpu", help="where the trunk and the head run (cpu, cuda)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="the head's training arithmetic (bf16: autocast, float32 weights)")
    ap.add_argument("--output", default="output/pose_head")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers {args.workers}: at least 1 process renders")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no GPU on this machine")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    t0 = time.perf_counter()
    train, val = [], []
    for tier in args.tiers:
        train += plan_split(args.seed, "train", PRESETS[args.preset], tier)[0]
        val += plan_split(args.seed, "val", PRESETS[args.preset], tier)[0][:20]
    for k, tier in enumerate(("easy", "hard")):  # large and small actors
        train += plan_clips(args.seed + k, [RANDOM_POSE], args.random_clips // 2,
                            args.random_seconds, tier)
        train += plan_clips(args.seed + 10 + k, [RANDOM_POSE_FOLDED], args.folded_clips // 2, CLIP_S,
                            tier)
        train += plan_clips(args.seed + 20 + k, [RANDOM_POSE_BENT], args.bent_clips // 2, CLIP_S,
                            tier)
        train += plan_clips(args.seed + 30 + k, [RANDOM_POSE_RAISED], args.raised_clips // 2,
                            CLIP_S, tier)
    samples = render_pose_samples(train, SIZE, args.per_second, seed=args.seed,
                                  workers=args.workers)
    if not args.no_mirror:
        samples = with_mirror_images(samples)
    # scored, not trained on: held-out classes, and new clips of three kinds of random poses (does
    # the head estimate poses, or recognize the training classes' pose sequences?)
    probes = {"val": render_pose_samples(val, SIZE, 1, seed=args.seed + 1, workers=args.workers)}
    for k, (name, kind) in enumerate((("new_random_poses", RANDOM_POSE),
                                      ("new_folded_poses", RANDOM_POSE_FOLDED),
                                      ("new_raised_poses", RANDOM_POSE_RAISED))):
        probes[name] = render_pose_samples(plan_clips(args.seed + 100 + 10 * k, [kind], 50, CLIP_S,
                                                      "easy"), SIZE, 2, seed=args.seed + 2 + k,
                                               workers=args.workers)
    trunk = EfficientNetLiteBackbone(weights="model_zoo:efficientnet_lite0", mirror_average=False)
    n_frames = len(samples.frames)
    feats = trunk_features(trunk, samples.frames, MEAN, STD, device=args.device)
    # the head trains on the features: the 7.8 GB of frames are freed (a new array, not a view)
    samples.frames = np.empty((0, *samples.frames.shape[1:]), samples.frames.dtype)
    probe_feats = {name: trunk_features(trunk, s.frames, MEAN, STD, device=args.device)
                   for name, s in probes.items()}
    t1 = time.perf_counter()
    head = PoseHead(feats.shape[1], args.channels)
    losses = train_pose_head(head, feats, samples, iterations=args.iterations, batch_size=32,
                             precision=args.precision)
    t2 = time.perf_counter()
    path = os.path.join(args.output, "pose_head.pth")
    with atomic_path(path) as tmp:
        torch.save({k: v.cpu() for k, v in head.state_dict().items()}, tmp)
    metrics = {"frames": n_frames, "mirror": not args.no_mirror, "tiers": args.tiers,
               "preset": args.preset, "random_clips": args.random_clips,
               "random_seconds": args.random_seconds, "folded_clips": args.folded_clips,
               "bent_clips": args.bent_clips, "raised_clips": args.raised_clips,
               "device": args.device, "workers": args.workers, "precision": args.precision,
               "render_and_feature_seconds": round(t1 - t0, 1), "train_seconds": round(t2 - t1, 1),
               **losses, **{name: evaluate_pose_head(head, probe_feats[name], s)
                            for name, s in probes.items()}}
    write_json_atomic(os.path.join(args.output, "metrics.json"), metrics, indent=1)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
