"""relocnet's configuration keys: every new key lives under INPUT.VIDEO.* or MODEL.RELOC.*."""
from detectron2.config import CfgNode as CN


def add_relocnet_config(cfg: CN) -> None:
    """Add relocnet's keys (with their defaults) to a detectron2 config, in place."""
    _add_video_config(cfg)
    _add_method_config(cfg)
    _add_backbone_config(cfg)
    _add_head_config(cfg)


def _add_video_config(_C: CN) -> None:
    """INPUT.VIDEO: decoding, windows and augmentation (paper §3.1, §4.1)."""
    _C.INPUT.VIDEO = CN()
    _C.INPUT.VIDEO.FPS = 24  # frames decoded per second of video (N in the paper)
    _C.INPUT.VIDEO.NUM_MICRO = 3  # micro sub-clips per 1-second sub-clip
    _C.INPUT.VIDEO.HEIGHT = 240  # frames are resized to HEIGHT x WIDTH before the backbone
    _C.INPUT.VIDEO.WIDTH = 320
    _C.INPUT.VIDEO.QUERY_SECONDS = 5  # query input length; shorter queries are zero-padded (§4.1)
    _C.INPUT.VIDEO.MIN_QUERY_SECONDS = 2  # queries shorter than this are rejected
    _C.INPUT.VIDEO.REFERENCE_SECONDS = 5  # K: reference window length in seconds
    _C.INPUT.VIDEO.WINDOW_OVERLAP = 4  # seconds shared by consecutive reference windows
    _C.INPUT.VIDEO.CROP_AROUND_GT_PROB = 0.9  # training: p of a random reference crop around the GT
    _C.INPUT.VIDEO.COLOR_JITTER = 0.2  # training: strength of brightness/contrast jitter (0 = off)
    _C.INPUT.VIDEO.HFLIP_PROB = 0.5  # training: p of flipping query and reference together
    _C.INPUT.VIDEO.SELF_SUPERVISED = CN()  # pairs cut from video folders (data/self_supervised.py)
    _C.INPUT.VIDEO.SELF_SUPERVISED.POSITIVE_PROB = 0.8  # p that the query comes from the window
    _C.INPUT.VIDEO.SELF_SUPERVISED.SPEED_RANGE = (0.75, 1.33)  # query playback speed factors
    _C.INPUT.VIDEO.SELF_SUPERVISED.STRENGTH = 1.0  # 0..1: scale of the copy augmentations
    _C.INPUT.VIDEO.DECODE_CACHE = ""  # directory of whole videos decoded at FPS/size ("" = none)


def _add_method_config(_C: CN) -> None:
    """MODEL.RELOC: what is matched and how the query is pooled."""
    _C.MODEL.RELOC = CN()
    # Which feature scales feed matching (paper's ablations): any of spatial, micro, macro.
    _C.MODEL.RELOC.FEATURES = ["spatial", "micro", "macro"]
    # How query and reference ROI features are compared: "correlation" (eq. 15) or "concat".
    _C.MODEL.RELOC.MATCHER = "correlation"
    # SimilarityHead: auxiliary classification of the query among the training classes
    # (0 = off): AUX_CLASSES >= the number of labels in DATASETS.TRAIN
    _C.MODEL.RELOC.AUX_CLASSES = 0
    _C.MODEL.RELOC.AUX_LOSS_WEIGHT = 0.0
    # RelocTemporal inference: relative query boxes (x0, y0, x1, y1) also matched, zoomed to the
    # input size; a query second scores its best view (copies shown small, picture in picture)
    _C.MODEL.RELOC.QUERY_CROPS = []
    _C.MODEL.RELOC.QUERY_POOLING = "mean"  # how valid query seconds are combined: mean | max | seconds (temporal)


def _add_backbone_config(_C: CN) -> None:
    """MODEL.RELOC: the three feature scales of the Siamese backbone (paper §3.1)."""
    # Micro spatio-temporal branch (eqs. 2-5)
    _C.MODEL.RELOC.MICRO = CN()
    _C.MODEL.RELOC.MICRO.NAME = "I3D"  # I3D (PyTorchVideo I3D-R50) | Light3D (small CPU 3D CNN)
    _C.MODEL.RELOC.MICRO.DEPTH = 50  # I3D-R50
    _C.MODEL.RELOC.MICRO.WIDTH = 64  # stem width of the 3D CNN
    _C.MODEL.RELOC.MICRO.OUT_CHANNELS = 512  # channels of Tm after projection
    _C.MODEL.RELOC.MICRO.WEIGHTS = ""  # Kinetics checkpoint (PyTorchVideo layout): path or URL

    # Macro spatio-temporal branch (eqs. 6-9)
    _C.MODEL.RELOC.MACRO = CN()
    _C.MODEL.RELOC.MACRO.HIDDEN = 64  # channels of the ConvLSTM states c, h, hh
    _C.MODEL.RELOC.MACRO.KERNEL = 3  # ConvLSTM kernel size

    # Spatial branch (eq. 1): a detectron2 backbone with a stride-16 "res4" output, by name:
    # build_relocnet_resnet_backbone (MODEL.RESNETS) | build_efficientnet_lite_backbone
    _C.MODEL.RELOC.SPATIAL_NAME = "build_relocnet_resnet_backbone"
    # ImageNet checkpoint of the spatial branch (and of EfficientNetLite3D): path, URL or
    # model_zoo:NAME (relocnet.model_zoo.PRETRAINED); ResNet: torchvision or detectron2 layout
    _C.MODEL.RELOC.SPATIAL_WEIGHTS = ""
    # average each EfficientNet branch's features with its mirror image's (mirror-invariant matching)
    _C.MODEL.RELOC.MIRROR_AVERAGE = False
    _C.MODEL.RELOC.EFFICIENTNET = CN()
    _C.MODEL.RELOC.EFFICIENTNET.VARIANT = "lite0"  # lite0 | lite1 | lite2
    _C.MODEL.RELOC.EFFICIENTNET.FROZEN = True  # ImageNet weights kept (features can be cached)
    # pose maps (build_pose_map_backbone / PoseEnvelope): a head trained on rendered SynthReloc
    # training frames (tools/train_pose.py); path or model_zoo:NAME of its weights
    _C.MODEL.RELOC.POSE = CN()
    _C.MODEL.RELOC.POSE.WEIGHTS = ""
    _C.MODEL.RELOC.POSE.CHANNELS = 192
    _C.MODEL.RELOC.POSE.FROZEN = True
    # also run the head on the mirror image of each frame and average it, mirrored back, with the
    # head's outputs (left and right limbs swapped): twice the pose branch's compute
    _C.MODEL.RELOC.POSE.MIRROR_TEST = False


def _add_head_config(_C: CN) -> None:
    """MODEL.RELOC: correlation, ROI pooling, heads and decoding (paper §3.2-3.4)."""
    # Correlation (eq. 15)
    _C.MODEL.RELOC.CORR = CN()
    _C.MODEL.RELOC.CORR.PATCH = 0  # s: the patch is (2s+1) x (2s+1)
    _C.MODEL.RELOC.CORR.WINDOW = 7  # W: displacements form a W x W neighbourhood
    _C.MODEL.RELOC.CORR.IMPL = "fast"  # fast (banded GEMMs) | gram (one GEMM per pair) | reference (loop)
    _C.MODEL.RELOC.CORR.NORMALIZE = True  # divide by channels x patch area (FlowNet convention)

    # ROI pooling and head (eqs. 13-20)
    _C.MODEL.RELOC.POOLER_RESOLUTION = 14
    _C.MODEL.RELOC.POOLER_SAMPLING_RATIO = 0
    _C.MODEL.RELOC.HEAD = CN()
    # RELOC_HEAD_REGISTRY: CorrelationHead (paper) | SimilarityHead | ChamferHead (temporal only)
    _C.MODEL.RELOC.HEAD.NAME = "CorrelationHead"
    _C.MODEL.RELOC.HEAD.SCALE = 20.0  # ChamferHead: initial logit = SCALE * (similarity - OFFSET)
    _C.MODEL.RELOC.HEAD.OFFSET = 0.6
    _C.MODEL.RELOC.HEAD.CHANNELS = 512  # CorrelationHead: channels of its ResNet stage (eq. 16)
    _C.MODEL.RELOC.HEAD.NUM_BLOCKS = 2  # CorrelationHead: bottleneck blocks in that stage
    _C.MODEL.RELOC.HEAD.EMBED_CHANNELS = 64  # SimilarityHead: channels of the learned embedding
    _C.MODEL.RELOC.HEAD.TEMPERATURE = 0.1  # SimilarityHead: tau of the soft maximum
    _C.MODEL.RELOC.HEAD.BATCH_SIZE_PER_IMAGE = 64  # proposals sampled per reference second
    _C.MODEL.RELOC.HEAD.POSITIVE_FRACTION = 0.25
    _C.MODEL.RELOC.HEAD.IOU_THRESHOLD = 0.5  # proposal/GT IoU that makes a proposal a positive
    _C.MODEL.RELOC.HEAD.SMOOTH_L1_BETA = 0.0
    _C.MODEL.RELOC.HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    _C.MODEL.RELOC.HEAD.SCORE_THRESH_TEST = 0.05
    _C.MODEL.RELOC.HEAD.NMS_THRESH_TEST = 0.5
    _C.MODEL.RELOC.HEAD.DETECTIONS_PER_SECOND = 10

    # Temporal decoding of per-second scores into segments
    _C.MODEL.RELOC.DECODER = CN()
    # a class in DECODER_REGISTRY (modeling/decoding.py): PaperDecoder (first..last matched
    # second), RunsDecoder, MaxSumDecoder, AlignmentDecoder
    _C.MODEL.RELOC.DECODER.NAME = "RunsDecoder"
    _C.MODEL.RELOC.DECODER.THRESHOLD = 0.5  # a second matches when its score exceeds this
    _C.MODEL.RELOC.DECODER.TOP_K = 5  # segments returned per pair
    # spatio-temporal: the scores of detections in seconds outside the top segment are multiplied
    # by this (1: the detections keep their own scores)
    _C.MODEL.RELOC.DECODER.OUTSIDE_WEIGHT = 1.0
    # "found" when the top segment's match probability reaches this; a buffer of the model, so a
    # checkpoint's calibrated value (tools/calibrate.py) replaces it when the weights load
    _C.MODEL.RELOC.MATCH_THRESHOLD = 0.5
