"""Config set-up shared by the tools."""
import logging

import torch
from detectron2.config import get_cfg
from detectron2.engine import default_setup

from ..config import add_relocnet_config

__all__ = ["setup_cfg"]


def setup_cfg(args, *, freeze: bool = True, log: bool = True):
    """get_cfg + relocnet's keys + the config file + command-line overrides."""
    cfg = get_cfg()
    add_relocnet_config(cfg)
    if getattr(args, "config_file", ""):
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(getattr(args, "opts", None) or [])
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger(__name__).warning("MODEL.DEVICE=%s but no GPU is available: using the CPU",
                                            cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    if freeze:
        cfg.freeze()
    if log:
        default_setup(cfg, args)
    return cfg
