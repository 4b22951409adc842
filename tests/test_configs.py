"""Every YAML under configs/ builds its model (random init, no weight files), and the small CPU
configs run one training step and one inference step on frames of their own size."""
import glob
import os
from argparse import Namespace

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import relocnet  # noqa: F401  (registers the models)
from relocnet.engine.setup import setup_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO)
                 for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
SMALL = [c for c in CONFIGS if c.startswith(os.path.join("configs", "synthreloc", ""))]
NO_WEIGHTS = ["MODEL.WEIGHTS", "", "MODEL.RELOC.SPATIAL_WEIGHTS", "", "MODEL.RELOC.MICRO.WEIGHTS",
              "", "MODEL.DEVICE", "cpu"]


def _model(config: str):
    cfg = setup_cfg(Namespace(config_file=os.path.join(REPO, config), opts=NO_WEIGHTS), log=False)
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def _pair(cfg, task: str):
    """A random pair at the config's input size, the query's actor matching seconds 1-2."""
    v = cfg.INPUT.VIDEO
    g = torch.Generator().manual_seed(0)
    frames = lambda t: torch.randint(0, 256, (t, v.FPS, v.HEIGHT, v.WIDTH, 3), generator=g,
                                     dtype=torch.uint8)
    tr, tq = v.REFERENCE_SECONDS, v.QUERY_SECONDS
    box = [v.WIDTH * 0.2, v.HEIGHT * 0.2, v.WIDTH * 0.6, v.HEIGHT * 0.8]
    match = torch.tensor([float(t in (1, 2)) for t in range(tr)])
    instances = []
    for t in range(tr):
        inst = Instances((v.HEIGHT, v.WIDTH))
        inst.gt_boxes = Boxes(torch.tensor([box] if match[t] else []).reshape(-1, 4))
        inst.gt_classes = torch.zeros(len(inst.gt_boxes), dtype=torch.long)
        instances.append(inst)
    pair = {"pair_id": "p", "task": task, "query": frames(tq),
            "query_valid": torch.arange(tq) < max(2, tq - 1), "reference": frames(tr),
            "reference_seconds": torch.arange(tr), "match": match,
            "height": v.HEIGHT, "width": v.WIDTH, "input_size": (v.HEIGHT, v.WIDTH)}
    if task == "spatio_temporal":
        pair["query_boxes"] = torch.tensor(box).expand(tq, 1, 4).clone()
        pair["instances"] = instances
    return pair


def test_every_config_is_found():
    assert len(CONFIGS) >= 13 and len(SMALL) >= 4
    for d in ("activitynet_search", "ava_search"):
        assert any(c.startswith(os.path.join("configs", d, "")) for c in CONFIGS), d


@pytest.mark.parametrize("config", [c for c in CONFIGS if c not in SMALL])
def test_config_builds(config):
    cfg, model = _model(config)
    assert model.task in ("temporal", "spatio_temporal")
    assert not any(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("config", SMALL)
def test_small_config_trains_and_infers(config):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg, model = _model(config)
    pair = _pair(cfg, model.task)
    model.train()
    with EventStorage():
        losses = model([pair])
        total = sum(losses.values())
    assert torch.isfinite(total), losses
    total.backward()
    model.eval()
    with torch.no_grad():
        out = model([pair])[0]
    assert out["second_scores"].shape == (cfg.INPUT.VIDEO.REFERENCE_SECONDS,)
    assert ("instances" in out) == (model.task == "spatio_temporal")
