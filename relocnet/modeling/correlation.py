"""Patch-wise correlation of eq. 15, with a readable reference and a GEMM fast path.

For a query feature ``a`` and a reference feature ``b`` (both ``(C, H, W)``)::

    out[dy_idx * window + dx_idx, y, x] =
        sum_c sum_{|u|,|v| <= patch} a[c, y+u, x+v] * b[c, y+dy+u, x+dx+v]

with ``dy, dx`` in ``[-(window // 2), window // 2]`` and zeros outside the maps; divided by
``C * (2 * patch + 1) ** 2`` when ``normalize``.

The patch sum factorises: with ``corr_d(l) = <a(l), b(l + d)>`` (zero where either position is
outside), ``out[d, l1] = sum_{|l| <= patch} corr_d(l1 + l)``, a zero-padded box filter of each
displacement channel (a depthwise convolution with a constant kernel). All implementations use it.

* ``reference`` (the readable spec): one shifted elementwise product per displacement;
* ``fast``: the dot products ``corr_d`` are entries of the Gram matrices ``a^T b`` (``HW x HW``
  per pair), of which only a band is needed: query row ``y`` meets reference rows
  ``y - window//2 .. y + window//2``. The query rows are cut into blocks of ``rows_per_block``
  rows; each block is one batched matrix multiplication (all pairs, every query object of a pair
  in the same GEMM) against the reference rows its window reaches, which are a strided view of
  the features (no copy of the reference). The ``window**2`` displacements of every location are
  then picked from the blocks with one precomputed gather. The backward (a custom autograd
  Function) is block GEMMs too: the query gradient by the same blocks, the reference gradient
  by blocks of reference rows (each row written once, no accumulation into a zeroed tensor),
  the gather's adjoint an injective scatter. ``rows_per_block`` trades wasted products
  (columns outside the window, rows of the block that are out of reach of each other) against
  GEMM size; :func:`rows_per_block` picks it by a cost model measured on CPU (docs/BENCHMARKS.md);
* ``gram``: the same code with one block (the whole Gram matrix, 1 GEMM per pair set): more wasted
  products, fewer and larger GEMMs.

"Useful" work of eq. 15 is ``2 * C * H * W * window**2`` flops per pair (plus the box filter);
:func:`useful_flops` counts it, :func:`computed_flops` counts what a block plan multiplies.
"""
from functools import lru_cache
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["correlate", "correlate_all_pairs", "IMPLS", "useful_flops", "computed_flops",
           "rows_per_block"]

IMPLS = ("fast", "gram", "reference")
Block = Tuple[int, int, int, int]  # query rows [y0, y1), reference rows [r0, r1)


def _check(a: torch.Tensor, b: torch.Tensor, patch: int, window: int, impl: str) -> None:
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"correlation expects (N, C, H, W) tensors, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"query and reference features differ in (C, H, W): {tuple(a.shape)} vs "
                         f"{tuple(b.shape)}")
    if patch < 0:
        raise ValueError(f"patch must be >= 0, got {patch}")
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if impl not in IMPLS:
        raise ValueError(f"unknown correlation impl {impl!r}; choose one of {IMPLS}")


def _finish(corr: torch.Tensor, channels: int, patch: int, normalize: bool) -> torch.Tensor:
    """Zero-padded (2*patch+1)^2 box sum of each displacement map of ``corr`` (N, W^2, H, W),
    times 1 / (C * (2*patch+1)^2) when ``normalize`` (a depthwise convolution: on CPU much
    faster than avg_pool2d)."""
    k = 2 * patch + 1
    scale = 1.0 / (channels * k * k) if normalize else 1.0
    if patch == 0:
        return corr * scale if normalize else corr
    n_maps = corr.shape[1]
    weight = corr.new_full((n_maps, 1, k, k), scale)
    return F.conv2d(corr, weight, padding=patch, groups=n_maps)


# ----------------------------------------------------------------------------- flop counts


def useful_flops(pairs: int, channels: int, h: int, w: int, window: int, patch: int = 0) -> int:
    """Flops of the correlation proper: 2*C*H*W*window^2 per pair (products with the zero padding
    included), plus the box filter of the patch sum ((2s+1)^2 - 1 adds per output, if s > 0)."""
    box = (window * window * h * w * ((2 * patch + 1) ** 2 - 1)) if patch else 0
    return pairs * (2 * channels * h * w * window * window + box)


def _blocks(h: int, window: int, rows: int) -> List[Block]:
    r = window // 2
    return [(y0, min(h, y0 + rows), max(0, y0 - r), min(h, y0 + rows + r))
            for y0 in range(0, h, rows)]


def computed_flops(pairs: int, channels: int, h: int, w: int, window: int, rows: int) -> int:
    """Flops the block GEMMs of the fast path multiply, useful or not (rows = rows_per_block)."""
    cells = sum((y1 - y0) * (r1 - r0) for y0, y1, r0, r1 in _blocks(h, window, rows))
    return pairs * 2 * channels * cells * w * w


@lru_cache(maxsize=256)
def rows_per_block(h: int, w: int, window: int, channels: int, pairs: int) -> int:
    """Rows per query block minimising a CPU cost model of the block GEMMs.

    Model (chosen to reproduce the ordering of block sizes measured on the 2-core CPU machine,
    docs/BENCHMARKS.md): a GEMM with an m x n output costs like (m + 24) * (n + 24) * (k + 64)
    multiply-adds at full speed (narrow GEMMs run below peak), plus 20 microseconds worth of
    multiply-adds per batched call (small problems: one block).
    """
    per_call = 20e-6 * 30e9  # multiply-adds
    best, best_cost = h, float("inf")
    for rows in range(1, h + 1):
        cost = 0.0
        for y0, y1, r0, r1 in _blocks(h, window, rows):
            m, n = (y1 - y0) * w, (r1 - r0) * w
            cost += pairs * (m + 24) * (n + 24) * (channels + 64) + per_call
        if cost < best_cost * 0.999:
            best, best_cost = rows, cost
    return best


# ----------------------------------------------------------------------------- reference


def _correlate_reference(a: torch.Tensor, b: torch.Tensor, patch: int, window: int,
                         normalize: bool) -> torch.Tensor:
    n, c, h, w = a.shape
    r = window // 2
    b_pad = F.pad(b, (r, r, r, r))
    maps = []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = b_pad[:, :, r + dy: r + dy + h, r + dx: r + dx + w]
            maps.append((a * shifted).sum(dim=1))  # corr_d(l) = <a(l), b(l + d)>
    corr = torch.stack(maps, dim=1)  # (N, window^2, H, W)
    return _finish(corr, c, patch, normalize)


# ----------------------------------------------------------------------------- fast (banded GEMM)


@lru_cache(maxsize=64)
def _plan(h: int, w: int, window: int, rows: int, d: int, device: str,
          by_reference: bool = False):
    """Blocks and gather indices of the block GEMM outputs, for D query objects.

    Blocks come from ``_blocks``: ``rows`` consecutive rows and the rows they reach. Normally
    (forward, query gradient) a block holds query rows [y0, y1) and the reference rows [r0, r1)
    they reach; ``by_reference`` swaps the roles (reference-gradient blocks: reference rows
    [y0, y1), each written once, and the query rows [r0, r1) that reach them). A block's output
    per pair is (D, query rows, W, reference rows, W), flattened; the blocks of one pair are
    concatenated (``total`` entries), then one zero. Returns (query/reference row ranges per
    block, total, src, pos, src[pos]): ``src`` maps every output position (d, k, y, x) to its
    entry (the zero when the displacement leaves the map); ``pos`` lists the positions that have
    an entry (for the backward scatter, which is injective).
    """
    r = window // 2
    blocks = _blocks(h, window, rows)
    if by_reference:  # (query rows, reference rows) of each block
        ranges = [(r0, r1, y0, y1) for y0, y1, r0, r1 in blocks]
    else:
        ranges = list(blocks)
    sizes = [d * (q1 - q0) * w * (b1 - b0) * w for q0, q1, b0, b1 in ranges]
    offsets = torch.tensor([0] + sizes[:-1]).cumsum(0)
    total = sum(sizes)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    dy = torch.arange(-r, r + 1).repeat_interleave(window).view(-1, 1, 1)  # k = dy_idx*W + dx_idx
    dx = torch.arange(-r, r + 1).repeat(window).view(-1, 1, 1)
    y2, x2 = ys + dy, xs + dx  # (W^2, H, W): the reference location of (k, y, x)
    valid = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
    block_of_row = torch.tensor([i for i, (y0, y1, _, _) in enumerate(blocks)
                                 for _ in range(y0, y1)])
    bi = block_of_row[(y2.clamp(0, h - 1) if by_reference else ys).expand_as(y2)]
    t = torch.tensor(ranges)
    q0, q1, b0, b1 = (t[:, j][bi] for j in range(4))
    nq, nr = (q1 - q0) * w, (b1 - b0) * w  # GEMM rows (per query object) and columns
    # entry of (d, k, y, x): block offset + (d * nq + (y - q0) * W + x) * nr + (y2 - b0) * W + x2
    di = torch.arange(d).view(d, 1, 1, 1)
    src = offsets[bi] + (di * nq + (ys - q0) * w + xs) * nr + (y2 - b0) * w + x2
    src = torch.where(valid, src, torch.full_like(src, total)).reshape(-1)
    pos = valid.expand(d, -1, -1, -1).reshape(-1).nonzero().flatten()
    dev = torch.device(device)
    return ranges, total, src.to(dev), pos.to(dev), src[pos].to(dev)


def _query_block(query: torch.Tensor, y0: int, y1: int) -> torch.Tensor:
    """(Bq, D, C, H, W) -> (Bq, D * (y1 - y0) * W, C), rows y0..y1-1 (a view when D == 1)."""
    bq, d, c, _, w = query.shape
    return query[:, :, :, y0:y1].permute(0, 1, 3, 4, 2).reshape(bq, d * (y1 - y0) * w, c)


def _scatter_grad(grad_out: torch.Tensor, plan) -> torch.Tensor:
    """Adjoint of the forward gather into a plan's block layout: (P, total)."""
    _, total, _, pos, src_pos = plan
    grad = grad_out.new_zeros(grad_out.shape[0], total)
    return grad.index_copy_(1, src_pos, grad_out.index_select(1, pos))


class _BandedCorrelation(torch.autograd.Function):
    """ref (P, C, H, W), query (Bq, D, C, H, W) with Bq in {1, P} -> corr_d (P, D * W^2 * H * W).

    Bq == 1: every reference map against the same D query maps (proposal x query pairs);
    Bq == P: pair p is (query[p], ref[p]).
    """

    @staticmethod
    def forward(ctx, ref, query, window: int, rows: int):
        p, c, h, w = ref.shape
        d = query.shape[1]
        blocks, _, src, _, _ = _plan(h, w, window, rows, d, str(ref.device))
        parts = []
        for y0, y1, r0, r1 in blocks:
            q = _query_block(query, y0, y1).expand(p, -1, -1)  # (P, Nq, C)
            parts.append(torch.bmm(q, ref[:, :, r0:r1].reshape(p, c, -1)).reshape(p, -1))
        parts.append(ref.new_zeros(p, 1))
        gram = torch.cat(parts, dim=1)  # (P, total + 1)
        ctx.save_for_backward(ref, query)
        ctx.window, ctx.rows = window, rows
        return gram.index_select(1, src)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        ref, query = ctx.saved_tensors
        p, c, h, w = ref.shape
        bq, d = query.shape[:2]
        grad_ref = grad_query = None
        if ctx.needs_input_grad[0]:  # by reference-row blocks: each row written once
            plan = _plan(h, w, ctx.window, ctx.rows, d, str(ref.device), True)
            grad = _scatter_grad(grad_out, plan)
            parts, start = [], 0
            for q0, q1, b0, b1 in plan[0]:
                nq, nr = d * (q1 - q0) * w, (b1 - b0) * w
                g = grad[:, start: start + nq * nr].view(p, nq, nr)
                start += nq * nr
                q = _query_block(query, q0, q1).expand(p, -1, -1)
                parts.append(torch.bmm(q.transpose(1, 2), g).view(p, c, b1 - b0, w))
            grad_ref = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        if ctx.needs_input_grad[1]:
            plan = _plan(h, w, ctx.window, ctx.rows, d, str(ref.device))
            grad = _scatter_grad(grad_out, plan)
            grad_query = torch.zeros_like(query)
            start = 0
            for y0, y1, r0, r1 in plan[0]:
                nq, nr = d * (y1 - y0) * w, (r1 - r0) * w
                g = grad[:, start: start + nq * nr].view(p, nq, nr)
                start += nq * nr
                r = ref[:, :, r0:r1].reshape(p, c, nr)
                gq = _sum_pairs(g, r) if bq == 1 else torch.bmm(g, r.transpose(1, 2))
                grad_query[:, :, :, y0:y1] += gq.view(bq, d, y1 - y0, w, c).permute(0, 1, 4, 2, 3)
        return grad_ref, grad_query, None, None


def _sum_pairs(g: torch.Tensor, r: torch.Tensor, chunk_elems: int = 1 << 22) -> torch.Tensor:
    """sum_p g[p] @ r[p]^T for g (P, Nq, Nr), r (P, C, Nr) -> (1, Nq, C).

    On CPU one accumulating GEMM per pair (the (Nq, C) sum stays in cache); elsewhere batched
    GEMMs over chunks of pairs (bounded temporary memory), then a sum.
    """
    p, nq, _ = g.shape
    if g.device.type == "cpu":
        out = g.new_zeros(nq, r.shape[1])
        for i in range(p):
            out.addmm_(g[i], r[i].t())
        return out.unsqueeze(0)
    step = max(1, chunk_elems // max(1, nq * r.shape[1]))
    out = None
    for i in range(0, p, step):
        part = torch.bmm(g[i:i + step], r[i:i + step].transpose(1, 2)).sum(0, keepdim=True)
        out = part if out is None else out.add_(part)
    return out


def _correlate_banded(ref: torch.Tensor, query: torch.Tensor, patch: int, window: int,
                      normalize: bool, rows: Optional[int]) -> torch.Tensor:
    """ref (P, C, H, W), query (Bq, D, C, H, W) -> (P * D, W^2, H, W), p-major."""
    p, c, h, w = ref.shape
    d = query.shape[1]
    if rows is None:
        rows = rows_per_block(h, w, window, c, p * d)
    corr = _BandedCorrelation.apply(ref, query, window, rows)
    return _finish(corr.view(p * d, window * window, h, w), c, patch, normalize)


# ----------------------------------------------------------------------------- public API


def correlate(a: torch.Tensor, b: torch.Tensor, *, patch: int = 0, window: int = 7,
              normalize: bool = True, impl: str = "fast") -> torch.Tensor:
    """Correlate query ``a`` with reference ``b`` pair by pair (eq. 15).

    Args:
        a, b: (N, C, H, W) query and reference features; pair n is (a[n], b[n]).
        patch: s, the patch is (2s+1) x (2s+1).
        window: W (odd), the displacements form a W x W neighbourhood.
        normalize: divide by C * (2s+1)^2.
        impl: "fast" (banded GEMM), "gram" (whole Gram matrix) or "reference" (loop over
            displacements).

    Returns:
        (N, window * window, H, W), channel ``dy_idx * window + dx_idx``.
    """
    _check(a, b, patch, window, impl)
    if impl == "reference":
        return _correlate_reference(a, b, patch, window, normalize)
    if a.shape[0] == 0:
        return a.new_zeros(0, window * window, *a.shape[2:])
    rows = a.shape[2] if impl == "gram" else None
    return _correlate_banded(b, a.unsqueeze(1), patch, window, normalize, rows)


def correlate_all_pairs(ref: torch.Tensor, query: torch.Tensor, *, patch: int = 0,
                        window: int = 7, normalize: bool = True,
                        impl: str = "fast") -> torch.Tensor:
    """Correlate every reference map with every query map.

    Args:
        ref: (P, C, H, W) reference (proposal) features.
        query: (D, C, H, W) query (object) features.

    Returns:
        (P * D, window * window, H, W), p-major: row ``p * D + d`` is
        ``correlate(query[d], ref[p])``.
    """
    if ref.dim() != 4 or query.dim() != 4 or ref.shape[1:] != query.shape[1:]:
        raise ValueError(f"correlate_all_pairs expects (P, C, H, W) and (D, C, H, W) with equal "
                         f"(C, H, W), got {tuple(ref.shape)} and {tuple(query.shape)}")
    _check(query, ref, patch, window, impl)
    p, d = ref.shape[0], query.shape[0]
    if p == 0 or d == 0:
        return ref.new_zeros(p * d, window * window, *ref.shape[2:])
    if impl == "reference":
        a = query.repeat(p, 1, 1, 1)  # row p*D + d -> query[d]
        b = ref.repeat_interleave(d, dim=0)  # row p*D + d -> ref[p]
        return _correlate_reference(a, b, patch, window, normalize)
    rows = ref.shape[2] if impl == "gram" else None
    return _correlate_banded(ref, query.unsqueeze(0), patch, window, normalize, rows)
