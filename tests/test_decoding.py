"""Segment decoding and window arithmetic (pure functions), on cases worked out by hand."""
import pytest
import torch

from relocnet.modeling.decoding import DECODER_REGISTRY, build_decoder, decode_paper, decode_runs
from relocnet.modeling.windows import average_by_second, pad_seconds, window_starts


def decode_segments(scores, seconds, *, name, threshold, top_k, pair_scores=None):
    """What a model does with MODEL.RELOC.DECODER: the registered decoder ``name``."""
    return build_decoder(name, threshold=threshold, top_k=top_k)(scores, seconds, pair_scores)


def test_every_decoder_is_registered_with_what_the_report_says_about_its_scores():
    names = sorted(k for k, _ in DECODER_REGISTRY)
    assert names == ["AlignmentDecoder", "MaxSumDecoder", "PaperDecoder", "RunsDecoder"]
    for name in names:
        assert DECODER_REGISTRY.get(name).ranking
    assert [n for n in names if DECODER_REGISTRY.get(n).scores_are_probabilities] == [
        "AlignmentDecoder"]


SECONDS = torch.arange(100, 110)
#                      100  101  102  103  104  105  106  107  108  109
SCORES = torch.tensor([0.1, 0.7, 0.9, 0.2, 0.6, 0.6, 0.6, 0.6, 0.1, 0.95])


def test_paper_rule_spans_first_to_last_matched_second():
    segs, scores = decode_paper(SCORES, SECONDS, threshold=0.5)
    assert segs.tolist() == [[101.0, 110.0]]  # 101 .. 109, end = last + 1
    assert scores.tolist() == pytest.approx([float(SCORES[1:].mean())])


def test_paper_rule_without_matches_returns_best_second():
    segs, scores = decode_paper(torch.tensor([0.1, 0.4, 0.3]), torch.tensor([7, 8, 9]), threshold=0.5)
    assert segs.tolist() == [[8.0, 9.0]]
    assert scores.tolist() == pytest.approx([0.4])


def test_runs_ranked_by_area_above_threshold():
    segs, scores = decode_runs(SCORES, SECONDS, threshold=0.5, top_k=5)
    # runs: 101-102 (0.2 + 0.4 = 0.6), 104-107 (4 x 0.1 = 0.4), 109 (0.45)
    assert segs.tolist() == [[101.0, 103.0], [109.0, 110.0], [104.0, 108.0]]
    assert scores.tolist() == pytest.approx([0.6, 0.45, 0.4])
    segs, _ = decode_runs(SCORES, SECONDS, threshold=0.5, top_k=1)
    assert segs.tolist() == [[101.0, 103.0]]


def test_runs_break_at_threshold_and_at_gaps_in_seconds():
    scores = torch.tensor([0.9, 0.5, 0.9, 0.9, 0.9])
    seconds = torch.tensor([0, 1, 2, 3, 7])  # 0.5 is not above 0.5; 3 -> 7 is a gap
    segs, vals = decode_runs(scores, seconds, threshold=0.5, top_k=5)
    assert segs.tolist() == [[2.0, 4.0], [0.0, 1.0], [7.0, 8.0]]
    assert vals.tolist() == pytest.approx([0.8, 0.4, 0.4])  # ties keep the earlier run first


def test_runs_fallback_and_dispatch():
    segs, vals = decode_runs(torch.tensor([0.2, 0.3]), torch.tensor([4, 5]), threshold=0.5, top_k=3)
    assert segs.tolist() == [[5.0, 6.0]] and vals.tolist() == pytest.approx([-0.2])
    a = decode_segments(SCORES, SECONDS, name="PaperDecoder", threshold=0.5, top_k=3)
    assert a[0].tolist() == decode_paper(SCORES, SECONDS, threshold=0.5)[0].tolist()
    with pytest.raises(ValueError, match="DECODER.NAME 'runs'; registered: AlignmentDecoder"):
        decode_segments(SCORES, SECONDS, name="runs", threshold=0.5, top_k=3)  # the old names
    with pytest.raises(ValueError, match="one score per second"):
        decode_runs(torch.tensor([]), torch.tensor([]), threshold=0.5, top_k=3)


def test_window_starts():
    assert window_starts(13, 5, 4) == list(range(9))  # stride 1, last window 8..12
    assert window_starts(12, 5, 2) == [0, 3, 6, 7]  # stride 3, last aligned to the end
    assert window_starts(5, 5, 4) == [0]
    assert window_starts(3, 5, 4) == [0]  # shorter than a window: one, unpadded
    with pytest.raises(ValueError, match="WINDOW_OVERLAP"):
        window_starts(10, 5, 5)


def test_average_by_second_and_padding():
    items = [(0, torch.tensor(1.0)), (1, torch.tensor(2.0)), (1, torch.tensor(4.0))]
    merged = average_by_second(items, 3)
    assert merged[0].item() == 1.0 and merged[1].item() == 3.0 and merged[2] is None
    x = torch.ones(2, 3)
    assert pad_seconds(x, 4).tolist() == [[1.0] * 3] * 2 + [[0.0] * 3] * 2
    assert pad_seconds(x, 1) is x


def test_alignment_decoder_lays_the_query_seconds_in_order():
    from relocnet.modeling.decoding import decode_alignment

    p = torch.full((10, 3), 0.1)
    # seconds 4, 5, 6 match query seconds 0, 1, 2; second 3 looks like query second 0 too (the
    # same shot a moment earlier): a per-second threshold would glue it on, the alignment not
    p[3, 0] = 0.9
    p[4, 0], p[5, 1], p[6, 2] = 0.9, 0.8, 0.7
    segs, scores = decode_alignment(p, torch.arange(10) + 100, top_k=2)
    assert segs.tolist()[0] == [104.0, 107.0]
    assert scores[0].item() == pytest.approx(0.8)
    assert len(segs) == 2 and (segs[1, 1] <= 104 or segs[1, 0] >= 107)  # no overlap
    # a query longer than the reference aligns its first seconds
    segs, scores = decode_alignment(torch.full((2, 5), 0.5), torch.arange(2), top_k=3)
    assert segs.tolist() == [[0.0, 2.0]] and scores.tolist() == [0.5]


def test_alignment_decoder_needs_per_query_second_scores():
    with pytest.raises(ValueError, match="AlignmentDecoder"):
        decode_segments(torch.rand(5), torch.arange(5), name="AlignmentDecoder", threshold=0.5, top_k=1)


def test_max_sum_finds_the_length_and_bridges_a_dip():
    scores = torch.tensor([0.1, 0.9, 0.9, 0.6, 0.9, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1])
    # level: median 0.1 + 0.7 * (0.9 - 0.1) = 0.66
    segs, vals = decode_segments(scores, torch.arange(11), name="MaxSumDecoder", threshold=0.7, top_k=2)
    # 0.24 + 0.24 - 0.06 + 0.24: the dip at second 3 does not cut the run; then the 0.8 second
    assert segs.tolist() == [[1.0, 5.0], [7.0, 8.0]]
    assert vals.tolist() == pytest.approx([0.66, 0.14])
    runs, _ = decode_segments(scores, torch.arange(11), name="RunsDecoder", threshold=0.66, top_k=1)
    assert runs.tolist() == [[1.0, 3.0]]  # the runs rule stops at the dip


def test_max_sum_level_is_relative_to_the_reference():
    """The same shape of scores, shifted up (a query that looks like everything) or squeezed,
    decodes to the same segment; an absolute threshold would take the whole reference."""
    base = torch.tensor([0.1, 0.2, 0.1, 0.8, 0.9, 0.7, 0.2, 0.1])
    for scores in (base, 0.5 + 0.5 * base, 0.1 * base):
        segs, _ = decode_segments(scores, torch.arange(8), name="MaxSumDecoder", threshold=0.2,
                                  top_k=1)
        assert segs.tolist() == [[3.0, 6.0]]


def test_max_sum_never_spans_a_skipped_second_and_falls_back_to_the_best_second():
    scores = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])  # level 0.5
    segs, _ = decode_segments(scores, torch.tensor([0, 1, 5, 6, 7, 8, 9, 10, 11]), name="MaxSumDecoder",
                              threshold=0.5, top_k=2)
    assert sorted(segs.tolist()) == [[0.0, 2.0], [5.0, 7.0]]
    flat = torch.tensor([0.3, 0.3, 0.3])  # nothing above the level: the first best second
    segs, vals = decode_segments(flat, torch.arange(3), name="MaxSumDecoder", threshold=0.5, top_k=1)
    assert segs.tolist() == [[0.0, 1.0]] and vals.tolist() == pytest.approx([0.0])
    with pytest.raises(ValueError, match="TOP_K"):
        decode_segments(scores, torch.arange(9), name="MaxSumDecoder", threshold=0.5, top_k=0)
