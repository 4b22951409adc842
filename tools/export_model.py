#!/usr/bin/env python
"""Strip a training checkpoint to the model weights (what relocnet/model_zoo ships).

    python tools/export_model.py output/<run>/model_final.pth relocnet/model_zoo/weights/<name>.pth

Drops the optimizer, scheduler and iteration (a third of the size for AdamW: two moments per
weight); the file is written to a temporary name and renamed, so a failed export leaves nothing.
"""
import argparse
import os
import sys
import tempfile

import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    args = ap.parse_args(argv)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, dict) or not model:
        print(f"error: {args.checkpoint} has no 'model' state dict", file=sys.stderr)
        return 1
    d = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=d)
    os.close(fd)
    try:
        torch.save({"model": model, "__author__": "relocnet"}, tmp)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"{args.output}: {len(model)} tensors, {os.path.getsize(args.output) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
