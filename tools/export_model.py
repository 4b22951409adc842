#!/usr/bin/env python
"""Strip a training checkpoint to the model weights (what relocnet/model_zoo ships).

    python tools/export_model.py output/<run>/model_final.pth relocnet/model_zoo/weights/<name>.pth

Drops the optimizer, scheduler and iteration (a third of the size for AdamW: two moments per
weight); the file is written to a temporary name and renamed, so a failed export leaves nothing.
"""
import argparse
import os
import sys

import torch

from relocnet.utils.fileio import atomic_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    args = ap.parse_args(argv)
    try:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: torch/pickle raise many types
        print(f"error: cannot read {args.checkpoint}: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'}", file=sys.stderr)
        return 1
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, dict) or not model:
        print(f"error: {args.checkpoint} has no 'model' state dict", file=sys.stderr)
        return 1
    with atomic_path(args.output) as tmp:
        torch.save({"model": model, "__author__": "relocnet"}, tmp)
    print(f"{args.output}: {len(model)} tensors, {os.path.getsize(args.output) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
