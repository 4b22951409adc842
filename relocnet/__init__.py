"""relocnet: video action re-localization with spatio-temporal correlation, on Detectron2.

Importing the package registers its components with detectron2's registries.
"""
from .config import add_relocnet_config

__version__ = "0.1.0"
__all__ = ["add_relocnet_config"]
