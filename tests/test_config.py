from detectron2.config import get_cfg

from relocnet import add_relocnet_config


def test_add_relocnet_config_and_base_yaml():
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")
    assert cfg.INPUT.VIDEO.FPS == 24
    assert cfg.MODEL.RELOC.CORR.WINDOW == 7
    assert cfg.MODEL.META_ARCHITECTURE == "RelocRCNN"
