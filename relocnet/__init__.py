"""relocnet: video action re-localization with spatio-temporal correlation, on Detectron2.

Importing the package registers its components with detectron2's registries (backbone,
meta-architectures) and its datasets (root from $DETECTRON2_DATASETS, default ./datasets).
"""
import warnings

# detectron2 calls torch.jit.script at import time; torch 2.14 warns about it on every import.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .config import add_relocnet_config  # noqa: E402
from .data import datasets as _datasets  # noqa: F401,E402  (registers the pair datasets)
from . import modeling  # noqa: F401,E402  (registers backbone, meta-architectures)

__version__ = "0.1.0"
__all__ = ["add_relocnet_config"]
