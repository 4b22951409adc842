"""Loading pretrained weights into the backbone's branches.

* Spatial ResNet (detectron2 ResNet, stem + res2..res4): an ImageNet checkpoint in
  - torchvision layout: ``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``, ..., ``fc.*``;
  - Caffe2/MSRA layout (detectron2 model zoo ``R-50.pkl``): ``res2_0_branch2a_w``, ... renamed by
    detectron2's ``convert_basic_c2_names``;
  - detectron2 layout: ``stem.conv1.weight``, ``res2.0.conv1.weight``, ... with any prefix
    (``backbone.bottom_up.`` ...), e.g. a ``.pkl``/``.pth`` with a ``"model"`` dict.
* Micro I3D (``relocnet.modeling.backbone.micro.I3D``): a Kinetics checkpoint of PyTorchVideo's
  ``i3d_r50`` (``blocks.0.conv.weight``, ``blocks.1.res_blocks.0.branch2.conv_a.weight``, ...),
  possibly wrapped in ``"model_state"``; blocks beyond res4 (res5, head) are reported unexpected.

Sources are file paths or http(s) URLs (downloaded once into ``<torch hub dir>/checkpoints``).
"""
import logging
import os
import pickle
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names
from torch import nn

__all__ = ["LoadReport", "resolve_checkpoint", "read_checkpoint", "load_spatial_weights",
           "load_micro_weights", "pretrained_keys", "trained_state_dict", "save_trained_weights"]

logger = logging.getLogger(__name__)

_WRAPPER_KEYS = ("model_state", "model", "state_dict")


@dataclass
class LoadReport:
    """What a checkpoint gave a module: target keys loaded, target keys missing, extra keys."""

    path: str
    layout: str
    loaded: List[str]
    missing: List[str]
    unexpected: List[str]

    def summary(self, max_keys: int = 8) -> str:
        def some(keys):
            more = f", ... (+{len(keys) - max_keys})" if len(keys) > max_keys else ""
            return ", ".join(keys[:max_keys]) + more

        lines = [f"{self.path} ({self.layout} layout): loaded {len(self.loaded)} tensors, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected"]
        if self.missing:
            lines.append(f"  missing (left as initialised): {some(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected (ignored): {some(self.unexpected)}")
        return "\n".join(lines)


def resolve_checkpoint(path_or_url: str, cache_dir: Optional[str] = None) -> str:
    """A local file for ``path_or_url``; URLs are downloaded once into ``cache_dir``;
    ``model_zoo:NAME`` is a pretrained file the model zoo finds (relocnet.model_zoo.PRETRAINED)."""
    if path_or_url.startswith("model_zoo:"):
        from ..model_zoo import get_pretrained

        return get_pretrained(path_or_url.split(":", 1)[1])
    if urlparse(path_or_url).scheme in ("http", "https"):
        cache_dir = cache_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
        os.makedirs(cache_dir, exist_ok=True)
        local = os.path.join(cache_dir, os.path.basename(urlparse(path_or_url).path))
        if not os.path.isfile(local):
            logger.info("Downloading %s to %s", path_or_url, local)
            torch.hub.download_url_to_file(path_or_url, local)  # temp file, then rename
        return local
    if not os.path.isfile(path_or_url):
        raise FileNotFoundError(f"{path_or_url}: checkpoint file does not exist")
    return path_or_url


def _unwrap(obj, path: str) -> Dict[str, torch.Tensor]:
    while isinstance(obj, dict):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint: expected a dict of tensors, got "
                         f"{type(obj).__name__}")
    state = {k: torch.as_tensor(v) for k, v in obj.items()
             if isinstance(v, (torch.Tensor, np.ndarray))}
    if not state:
        raise ValueError(f"{path}: not a checkpoint: no tensors (keys: {list(obj)[:8]})")
    return state


def read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    """Name -> tensor of a .pkl (detectron2/Caffe2) or torch checkpoint, unwrapped from
    "model_state" / "model" / "state_dict"."""
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                obj = pickle.load(f, encoding="latin1")
        else:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:  # e.g. PyTorchVideo/SlowFast files storing a cfg
                logger.warning("%s: not loadable with weights_only=True; loading the full pickle "
                               "(only do this for files you trust)", path)
                obj = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as e:
        raise ValueError(f"{path}: cannot read checkpoint: {e}") from e
    return _unwrap(obj, path)


def _strip_prefix(state: Dict[str, torch.Tensor], anchor: str) -> Optional[Tuple[str, Dict]]:
    """(prefix, the keys under it without it) for the shortest key ending with ``anchor``."""
    hits = sorted((k for k in state if k == anchor or k.endswith("." + anchor)), key=len)
    if not hits:
        return None
    prefix = hits[0][: -len(anchor)]
    return prefix, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


_TORCHVISION_RULES = [
    (r"^conv1\.weight$", "stem.conv1.weight"),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}."),
    (r"^layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm."),
    (r"^layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut."),
    (r"^layer(\d)\.(\d+)\.downsample\.1\.",
     lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm."),
]


def _torchvision_to_d2(name: str) -> str:
    for pattern, repl in _TORCHVISION_RULES:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    return name


def _spatial_state(ckpt: Dict[str, torch.Tensor], path: str
                   ) -> Tuple[str, Dict[str, torch.Tensor], Dict[str, str]]:
    """(layout, detectron2-named state, new name -> checkpoint name)."""
    found = _strip_prefix(ckpt, "layer1.0.conv1.weight")
    if found is not None:
        prefix, tv = found
        names = {_torchvision_to_d2(k): k for k in tv}
        return ("torchvision", {new: tv[old] for new, old in names.items()},
                {new: prefix + old for new, old in names.items()})
    if "res2_0_branch2a_w" in ckpt:
        old = sorted(ckpt)
        names = dict(zip(convert_basic_c2_names(old), old))
        return "caffe2", {new: ckpt[o] for new, o in names.items()}, names
    found = _strip_prefix(ckpt, "res2.0.conv1.weight")
    if found is not None:
        prefix, d2 = found
        return "detectron2", d2, {k: prefix + k for k in d2}
    raise ValueError(f"{path}: not a ResNet checkpoint in torchvision, Caffe2 or detectron2 "
                     f"layout (no key like 'layer1.0.conv1.weight', 'res2_0_branch2a_w' or "
                     f"'res2.0.conv1.weight'; first keys: {sorted(ckpt)[:5]})")


def _load_into(module: nn.Module, state: Dict[str, torch.Tensor], names: Dict[str, str], *,
               path: str, layout: str) -> LoadReport:
    target = module.state_dict()
    state = {k: v for k, v in state.items()
             if k in target or not k.endswith("num_batches_tracked")}
    loaded = []
    for key, value in target.items():
        if key not in state:
            continue
        if state[key].shape != value.shape:
            raise ValueError(
                f"{path}: {layout} checkpoint does not fit the model: {names.get(key, key)!r} has "
                f"shape {tuple(state[key].shape)}, the model's {key!r} has {tuple(value.shape)}")
        loaded.append(key)
    if not loaded:
        raise ValueError(f"{path}: no tensor of this {layout} checkpoint matches the model "
                         f"(first checkpoint keys: {sorted(state)[:5]}, model keys: "
                         f"{list(target)[:5]})")
    module.load_state_dict({k: state[k] for k in loaded}, strict=False)
    report = LoadReport(path=path, layout=layout, loaded=loaded,
                        missing=[k for k in target if k not in state],
                        unexpected=[names.get(k, k) for k in state if k not in target])
    logger.info("%s", report.summary())
    return report


def load_spatial_weights(resnet: nn.Module, path_or_url: str, *,
                         cache_dir: Optional[str] = None) -> LoadReport:
    """Load an ImageNet ResNet checkpoint (torchvision, Caffe2 or detectron2 layout) into
    detectron2's ResNet (the backbone's ``spatial``). Raises ValueError on shape mismatches."""
    path = resolve_checkpoint(path_or_url, cache_dir)
    layout, state, names = _spatial_state(read_checkpoint(path), path)
    first = getattr(resnet, "res3", [None])[0]
    if layout == "torchvision" and hasattr(first, "conv3") and first.conv1.stride[0] == 2:
        logger.warning("%s: torchvision ResNets stride in the 3x3 conv; set "
                       "MODEL.RESNETS.STRIDE_IN_1X1 False for these weights", path)
    return _load_into(resnet, state, names, path=path, layout=layout)


def load_micro_weights(micro: nn.Module, path_or_url: str, *,
                       cache_dir: Optional[str] = None) -> LoadReport:
    """Load a Kinetics I3D checkpoint in PyTorchVideo layout into the micro 3D CNN."""
    path = resolve_checkpoint(path_or_url, cache_dir)
    found = _strip_prefix(read_checkpoint(path), "blocks.0.conv.weight")
    if found is None:
        raise ValueError(f"{path}: not a PyTorchVideo checkpoint (no 'blocks.0.conv.weight' key)")
    prefix, state = found
    return _load_into(micro, state, {k: prefix + k for k in state}, path=path,
                      layout="pytorchvideo")


def pretrained_keys(model: torch.nn.Module) -> set:
    """State-dict keys of the frozen modules (``frozen = True``, e.g. the ImageNet
    EfficientNet branches): built from their pretrained weights, never trained, so checkpoints
    leave them out (:func:`trained_state_dict`)."""
    keys = set()
    for prefix, module in model.named_modules():
        if getattr(module, "frozen", False):
            keys.update(f"{prefix}.{k}" for k in module.state_dict())
    return keys


def trained_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict without the frozen pretrained modules (what a checkpoint needs)."""
    frozen = pretrained_keys(model)
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def save_trained_weights(model: torch.nn.Module, path: str) -> None:
    """Write ``{"model": trained_state_dict(model)}`` to ``path`` atomically (what load_model
    reads; the frozen pretrained modules are rebuilt from the model zoo)."""
    from ..utils.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": trained_state_dict(model)}, tmp)
