"""Eq. 15 correlation: both implementations against a literal loop, each other, and gradcheck."""
import itertools

import pytest
import torch

from relocnet.modeling import correlation as corr_mod
from relocnet.modeling.correlation import (computed_flops, correlate, correlate_all_pairs,
                                          rows_per_block, useful_flops)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small CPU workloads: a second thread costs more than it gives on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def literal_correlation(a, b, patch, window, normalize):
    """The contract's formula, one scalar at a time."""
    n, c, h, w = a.shape
    r = window // 2
    out = torch.zeros(n, window * window, h, w, dtype=a.dtype)
    for i, (k, (dy, dx)) in itertools.product(
            range(n), enumerate(itertools.product(range(-r, r + 1), repeat=2))):
        for y, x, u, v in itertools.product(range(h), range(w), range(-patch, patch + 1),
                                            range(-patch, patch + 1)):
            y1, x1, y2, x2 = y + u, x + v, y + dy + u, x + dx + v
            if 0 <= y1 < h and 0 <= x1 < w and 0 <= y2 < h and 0 <= x2 < w:
                out[i, k, y, x] += (a[i, :, y1, x1] * b[i, :, y2, x2]).sum()
    return out / (c * (2 * patch + 1) ** 2) if normalize else out


@pytest.mark.parametrize("impl", ["fast", "gram", "reference"])
@pytest.mark.parametrize("patch,window,h,w", [(0, 3, 4, 5), (1, 3, 3, 5), (2, 5, 4, 3),
                                               (1, 9, 3, 4), (0, 1, 2, 2)])
def test_matches_literal_formula(impl, patch, window, h, w):
    g = torch.Generator().manual_seed(patch * 100 + window * 10 + h)
    a = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    b = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    for normalize in (True, False):
        expected = literal_correlation(a, b, patch, window, normalize)
        out = correlate(a, b, patch=patch, window=window, normalize=normalize, impl=impl)
        assert out.shape == (2, window * window, h, w)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("patch", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 3, 7, 9])
@pytest.mark.parametrize("h,w", [(6, 6), (5, 8), (3, 4)])
def test_fast_equals_reference_fp32(patch, window, h, w):
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(2, 2, 16, h, w, generator=g)
    fast = correlate(a, b, patch=patch, window=window, impl="fast")
    ref = correlate(a, b, patch=patch, window=window, impl="reference")
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    ref_all = torch.randn(3, 16, h, w, generator=g)
    query = torch.randn(2, 16, h, w, generator=g)
    fast = correlate_all_pairs(ref_all, query, patch=patch, window=window, impl="fast")
    ref = correlate_all_pairs(ref_all, query, patch=patch, window=window, impl="reference")
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_window_larger_than_map_is_zero_outside():
    a = torch.randn(1, 4, 2, 3)
    out = correlate(a, a, window=9, impl="fast")
    assert out.shape == (1, 81, 2, 3)
    # displacement (dy, dx) = (-4, -4) always leaves the map; (0, 0) is the mean squared norm
    assert out[0, 0].abs().max() == 0
    torch.testing.assert_close(out[0, 40], (a[0] ** 2).mean(0))


@pytest.mark.parametrize("impl", ["fast", "gram", "reference"])
def test_gradcheck(impl):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    for patch, window, fast_mode in [(0, 3, False), (1, 3, False), (1, 5, True)]:
        assert torch.autograd.gradcheck(
            lambda x, y: correlate(x[:1], y[:1], patch=patch, window=window, impl=impl), (a, b),
            fast_mode=fast_mode)
        assert torch.autograd.gradcheck(  # P = 2 proposals x D = 1 query
            lambda x, y: correlate_all_pairs(x, y[:1], patch=patch, window=window, impl=impl),
            (a, b), fast_mode=fast_mode)


def test_all_pairs_ordering_is_p_major():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(3, 8, 5, 6, generator=g)
    query = torch.randn(2, 8, 5, 6, generator=g)
    out = correlate_all_pairs(ref, query, patch=1, window=5)
    assert out.shape == (6, 25, 5, 6)
    for p, d in itertools.product(range(3), range(2)):
        expected = correlate(query[d:d + 1], ref[p:p + 1], patch=1, window=5, impl="reference")
        torch.testing.assert_close(out[p * 2 + d: p * 2 + d + 1], expected, rtol=1e-4, atol=1e-6)
    assert correlate_all_pairs(ref[:0], query).shape == (0, 49, 5, 6)


def test_paper_shape():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(16, 1600, 14, 14, generator=g)  # P = 16 proposals
    query = torch.randn(1, 1600, 14, 14, generator=g)  # D = 1 query object
    out = correlate_all_pairs(ref, query, patch=1, window=7)
    assert out.shape == (16, 49, 14, 14)  # (PD, W^2, 14, 14)
    ref_out = correlate_all_pairs(ref[:2], query, patch=1, window=7, impl="reference")
    torch.testing.assert_close(out[:2], ref_out, rtol=1e-4, atol=1e-4 * ref_out.abs().max().item())


def test_bad_arguments():
    a = torch.randn(1, 4, 5, 5)
    with pytest.raises(ValueError, match="odd"):
        correlate(a, a, window=4)
    with pytest.raises(ValueError, match="differ"):
        correlate(a, torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="impl"):
        correlate(a, a, impl="cuda")
    with pytest.raises(ValueError, match="patch"):
        correlate(a, a, patch=-1)


@pytest.mark.parametrize("window,h,w", [(7, 14, 14), (5, 7, 9), (3, 5, 4), (9, 3, 6)])
def test_every_block_size_matches_reference(window, h, w, one_thread):
    """The banded GEMM is exact whatever the row blocks (1 row .. whole map), with several query
    objects per pair (D = 3) and for pairwise correlation."""
    g = torch.Generator().manual_seed(window * h)
    ref = torch.randn(4, 24, h, w, generator=g)
    query = torch.randn(3, 24, h, w, generator=g)
    expected = correlate_all_pairs(ref, query, patch=1, window=window, impl="reference")
    pairwise = correlate(query, ref[:3], window=window, impl="reference")
    for rows in range(1, h + 1):
        out = corr_mod._correlate_banded(ref, query.unsqueeze(0), 1, window, True, rows)
        tol = 1e-4 * expected.abs().max().item()
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=tol)
        out = corr_mod._correlate_banded(ref[:3], query.unsqueeze(1), 0, window, True, rows)
        tol = 1e-4 * pairwise.abs().max().item()
        torch.testing.assert_close(out, pairwise, rtol=1e-4, atol=tol)


@pytest.mark.parametrize("rows", [1, 2, 4])
def test_gradcheck_block_sizes_several_queries(rows, one_thread):
    """Backward of the custom autograd Function (block GEMMs transposed, gather adjoint) across
    block boundaries, for P x D pairs (query gradient summed over proposals) and pairwise."""
    g = torch.Generator().manual_seed(rows)
    ref = torch.randn(3, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    query = torch.randn(2, 2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda r, q: corr_mod._correlate_banded(r, q.unsqueeze(0), 1, 3, True, rows),
        (ref, query), fast_mode=True)
    assert torch.autograd.gradcheck(
        lambda r, q: corr_mod._correlate_banded(r, q.unsqueeze(1), 0, 5, False, rows),
        (ref[:2], query), fast_mode=True)


def test_one_input_without_grad():
    g = torch.Generator().manual_seed(5)
    ref = torch.randn(3, 8, 6, 6, generator=g, requires_grad=True)
    query = torch.randn(1, 8, 6, 6, generator=g)
    for impl in ("fast", "reference"):
        ref.grad = None
        correlate_all_pairs(ref, query, patch=1, window=5, impl=impl).square().sum().backward()
        if impl == "fast":
            fast_grad = ref.grad.clone()
    torch.testing.assert_close(fast_grad, ref.grad, rtol=1e-4, atol=1e-6)


def test_flop_counts_by_hand():
    # one pair, C = 2, 3 x 3 map, window 3: 9 locations x 9 displacements x 2 channels x 2 flops
    assert useful_flops(1, 2, 3, 3, 3) == 2 * 2 * 9 * 9
    # patch s = 1 adds 8 additions per output value (9 x 9 outputs per pair), 5 pairs
    assert useful_flops(5, 2, 3, 3, 3, patch=1) == 5 * (2 * 2 * 9 * 9 + 9 * 9 * 8)
    # blocks of 1 row: query row y meets reference rows y-1..y+1 clipped: 2 + 3 + 2 = 7 row
    # pairs of 3 x 3 locations; one block of 3 rows: the whole 9 x 9 Gram matrix
    assert computed_flops(1, 2, 3, 3, 3, rows=1) == 2 * 2 * 7 * 9
    assert computed_flops(1, 2, 3, 3, 3, rows=3) == 2 * 2 * 81
    # the paper's shape: the whole Gram matrix is 196 / 49 = 4 x the useful work
    assert computed_flops(16, 1600, 14, 14, 7, rows=14) == 4 * useful_flops(16, 1600, 14, 14, 7)


def test_rows_per_block_choices():
    assert rows_per_block(7, 7, 5, 144, 20) == 7  # small maps: one GEMM
    rows = rows_per_block(14, 14, 7, 1600, 100)
    assert 1 < rows < 14  # the paper's shape: a band of blocks
    whole = computed_flops(100, 1600, 14, 14, 7, 14)
    assert computed_flops(100, 1600, 14, 14, 7, rows) < 0.7 * whole


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(5, 32, 14, 14, generator=g)
    query = torch.randn(2, 32, 14, 14, generator=g)
    cpu = correlate_all_pairs(ref, query, patch=1, window=7)
    gpu = correlate_all_pairs(ref.cuda(), query.cuda(), patch=1, window=7)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4 * cpu.abs().max().item())
