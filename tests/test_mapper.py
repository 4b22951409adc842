import av
import numpy as np
import pytest
import torch

from relocnet.data.mapper import (RelocPairMapper, match_vector, query_box_inputs,
                                  seconds_of_span)
from relocnet.data.pairs import save_pairs, load_pairs, resolve_video


def _write_video(path, seconds, fps=12, size=(64, 48)):
    """Frames whose brightness encodes the second, so tests can check which second came back."""
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            img = np.full((h, w, 3), 10 + 20 * (i // fps), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_seconds_and_match():
    assert seconds_of_span(0, 5) == [0, 1, 2, 3, 4]
    assert seconds_of_span(2.0, 4.0) == [2, 3]
    assert seconds_of_span(2.4, 4.6) == [2, 3, 4]  # sub-clips overlapping the span by >= 0.5 s
    m = match_vector([0, 1, 2, 3, 4, 5], [[2, 4]])
    assert m.tolist() == [0, 0, 1, 1, 0, 0]


def test_query_boxes_nearest_and_multi_object():
    b = query_box_inputs({3: [0, 0, 1, 1], 5: [2, 2, 3, 3]}, [3, 4, 5, 6], 5, (1.0, 1.0))
    assert b.shape == (5, 1, 4)
    assert b[1, 0].tolist() == [0, 0, 1, 1]  # tie -> earlier second
    assert b[3, 0].tolist() == b[4, 0].tolist() == [2, 2, 3, 3]  # padding repeats the last
    b2 = query_box_inputs({0: [[0, 0, 1, 1], [1, 1, 2, 2]], 1: [3, 3, 4, 4]}, [0, 1], 2, (2.0, 1.0))
    assert b2.shape == (2, 2, 4) and b2[1].tolist() == [[6, 3, 8, 4]] * 2  # fewer repeat the last


@pytest.fixture
def pair_file(tmp_path):
    _write_video(tmp_path / "q.mp4", 3)
    _write_video(tmp_path / "r.mp4", 12)
    pairs = [{
        "pair_id": "p0", "label": "wave",
        "query": {"video": "q.mp4", "start": 0, "end": 3, "boxes": {"0": [8, 8, 40, 40]}},
        "reference": {"video": "r.mp4", "start": 0, "end": 12},
        "segments": [[6, 8]],
        "boxes": {"6": [[0, 0, 32, 24]], "7": [[32, 24, 64, 48]]},
    }]
    path = tmp_path / "pairs.json"
    save_pairs(str(path), "spatio_temporal", pairs)
    data = load_pairs(str(path))
    rec = data["pairs"][0]
    for k in ("query", "reference"):
        rec[k]["video"] = resolve_video(str(path), rec[k]["video"])
    return rec


def _mapper(is_train, **kw):
    args = dict(is_train=is_train, task="spatio_temporal", fps=6, size=(24, 32),
                query_seconds=5, reference_seconds=5, crop_around_gt_prob=1.0)
    args.update(kw)
    return RelocPairMapper(**args)


def test_mapper_test_mode_full_reference(pair_file):
    out = _mapper(False)(pair_file)
    assert out["query"].shape == (5, 6, 24, 32, 3) and out["query"].dtype == torch.uint8
    assert out["query_valid"].tolist() == [True, True, True, False, False]
    assert out["query"][3:].abs().sum() == 0  # zero padding (§4.1)
    assert out["reference"].shape == (12, 6, 24, 32, 3)
    assert out["reference_seconds"].tolist() == list(range(12))
    assert out["match"].tolist() == [0] * 6 + [1, 1] + [0] * 4
    # brightness encodes the second: reference second 7 is 10 + 20 * 7
    assert abs(float(out["reference"][7].float().mean()) - 150) < 4
    # boxes scaled from 64x48 to 32x24
    assert out["instances"][6].gt_boxes.tensor.tolist() == [[0, 0, 16, 12]]
    assert out["instances"][7].gt_boxes.tensor.tolist() == [[16, 12, 32, 24]]
    assert len(out["instances"][0]) == 0
    assert out["query_boxes"].shape == (5, 1, 4)
    assert out["query_boxes"][0, 0].tolist() == [4, 4, 20, 20]
    assert (out["height"], out["width"]) == (48, 64)


def test_mapper_train_crops_around_gt(pair_file):
    m = _mapper(True)
    for _ in range(5):
        out = m(pair_file)
        assert out["reference"].shape[0] == 5
        assert out["match"].sum() >= 1  # crop around the ground truth keeps a positive second
        secs = out["reference_seconds"].tolist()
        assert secs == list(range(secs[0], secs[0] + 5))
        # the frames really come from those seconds
        got = float(out["reference"][0].float().mean())
        assert abs(got - (10 + 20 * secs[0])) < 4


def test_mapper_flip_moves_boxes(pair_file):
    out = _mapper(True, hflip_prob=1.0, crop_around_gt_prob=1.0)(pair_file)
    assert out["query_boxes"][0, 0].tolist() == [12, 4, 28, 20]
    assert out["hflip"] is True and out["label_index"] == -1  # the mirror may be another class
    assert _mapper(True, hflip_prob=0.0)(pair_file)["hflip"] is False


def test_decode_cache_matches_direct_decoding_and_ignores_partial_entries(pair_file, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".tmp-killed.npy").write_bytes(b"\x93NUMPY partial")  # a writer killed mid-way
    direct = _mapper(False)(pair_file)
    cached = _mapper(False, decode_cache=str(cache))
    first = cached(pair_file)  # decodes and writes the entries
    entries = sorted(p.name for p in cache.iterdir() if not p.name.startswith(".tmp-"))
    assert len(entries) == 2  # query and reference videos
    second = cached(pair_file)  # read back by memory map
    for out in (first, second):
        assert torch.equal(out["reference"], direct["reference"])
        assert torch.equal(out["query"], direct["query"])
        assert out["reference_seconds"].tolist() == direct["reference_seconds"].tolist()


def test_long_query_random_crop_in_training_whole_at_test(pair_file):
    """A query longer than QUERY_SECONDS: training takes a contiguous QUERY_SECONDS crop of it,
    evaluation keeps it whole (the models window it, as the CLI does)."""
    rec = dict(pair_file, query=dict(pair_file["query"], video=pair_file["reference"]["video"],
                                     start=0, end=9, boxes={0: [8, 8, 40, 40]}))
    out = _mapper(False, query_seconds=3)(rec)
    assert out["query"].shape[0] == 9 and bool(out["query_valid"].all())
    firsts = set()
    for _ in range(12):
        out = _mapper(True, query_seconds=3, color_jitter=0.0)(rec)
        assert out["query"].shape[0] == 3 and bool(out["query_valid"].all())
        seconds = [round((float(out["query"][i].float().mean()) - 10) / 20) for i in range(3)]
        assert seconds == list(range(seconds[0], seconds[0] + 3)) and 0 <= seconds[0] <= 6
        firsts.add(seconds[0])
    assert len(firsts) > 1
