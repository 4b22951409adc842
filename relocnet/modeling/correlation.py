"""Patch-wise correlation of eq. 15, with a readable reference and a GEMM fast path.

For a query feature ``a`` and a reference feature ``b`` (both ``(C, H, W)``)::

    out[dy_idx * window + dx_idx, y, x] =
        sum_c sum_{|u|,|v| <= patch} a[c, y+u, x+v] * b[c, y+dy+u, x+dx+v]

with ``dy, dx`` in ``[-(window // 2), window // 2]`` and zeros outside the maps; divided by
``C * (2 * patch + 1) ** 2`` when ``normalize``.

The patch sum factorises: with ``corr_d(l) = <a(l), b(l + d)>`` (zero where either position is
outside), ``out[d, l1] = sum_{|l| <= patch} corr_d(l1 + l)``, a zero-padded box filter of each
displacement channel. Both implementations use it:

* ``reference`` (the readable spec): one shifted elementwise product per displacement;
* ``fast``: all location dot products in one matrix multiplication (the Gram matrix ``a^T b``,
  ``HW x HW`` per pair; for all P x D pairs one ``(D*HW, C) x (C, P*HW)`` GEMM), then the
  ``window**2`` valid displacements of every query location picked with a precomputed index (a
  gather whose backward is a plain scatter: (location, displacement) -> (location, location) is
  injective). Autograd gives the backward of the GEMM, so the backward is GEMM too.

The box filter is a depthwise convolution with a constant kernel.
"""
from functools import lru_cache
from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["correlate", "correlate_all_pairs", "IMPLS"]

IMPLS = ("fast", "reference")


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


# ----------------------------------------------------------------------------- fast (GEMM)


@lru_cache(maxsize=64)
def _band_index(h: int, w: int, window: int, device: str
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(l1, l2, pos) of every valid (location, displacement): pos = k * HW + l1 in the output."""
    r = window // 2
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(1, -1), xs.reshape(1, -1)  # (1, HW)
    d = torch.arange(-r, r + 1)
    dy = d.repeat_interleave(window).reshape(-1, 1)  # (W^2, 1), k = dy_idx * window + dx_idx
    dx = d.repeat(window).reshape(-1, 1)
    y2, x2 = ys + dy, xs + dx  # (W^2, HW)
    valid = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
    k_idx, l1 = valid.nonzero(as_tuple=True)
    l2 = y2[k_idx, l1] * w + x2[k_idx, l1]
    pos = k_idx * (h * w) + l1
    dev = torch.device(device)
    return l1.to(dev), l2.to(dev), pos.to(dev)


class _BandGather(torch.autograd.Function):
    """(D, HW, P, HW) Gram matrices -> (P, D, W^2 * HW) displacement maps; zeros where invalid."""

    @staticmethod
    def forward(ctx, gram, l1, l2, pos, size):
        d, _, p, _ = gram.shape
        vals = gram[:, l1, :, l2]  # (V, D, P): advanced indices go first
        out = gram.new_zeros(p, d, size)
        out[:, :, pos] = vals.permute(2, 1, 0)
        ctx.save_for_backward(l1, l2, pos)
        ctx.gram_shape = gram.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        l1, l2, pos = ctx.saved_tensors
        grad_gram = grad_out.new_zeros(ctx.gram_shape)
        grad_gram[:, l1, :, l2] = grad_out[:, :, pos].permute(2, 1, 0)  # injective: no accumulate
        return grad_gram, None, None, None, None


def _gram_to_corr(gram: torch.Tensor, h: int, w: int, window: int) -> torch.Tensor:
    """(D, HW, P, HW) -> (P * D, W^2, H, W) per-displacement dot-product maps corr_d."""
    d, _, p, _ = gram.shape
    l1, l2, pos = _band_index(h, w, window, str(gram.device))
    out = _BandGather.apply(gram, l1, l2, pos, window * window * h * w)
    return out.reshape(p * d, window * window, h, w)


def _correlate_fast(a: torch.Tensor, b: torch.Tensor, patch: int, window: int,
                    normalize: bool) -> torch.Tensor:
    n, c, h, w = a.shape
    gram = torch.bmm(a.reshape(n, c, h * w).transpose(1, 2), b.reshape(n, c, h * w))
    corr = _gram_to_corr(gram.reshape(n, h * w, 1, h * w), h, w, window)  # P = 1, D = N
    return _finish(corr, c, patch, normalize)


def _correlate_all_pairs_fast(ref: torch.Tensor, query: torch.Tensor, patch: int, window: int,
                              normalize: bool) -> torch.Tensor:
    p, c, h, w = ref.shape
    d = query.shape[0]
    q = query.reshape(d, c, h * w).transpose(1, 2).reshape(d * h * w, c)  # (D*HW, C)
    r = ref.reshape(p, c, h * w).transpose(0, 1).reshape(c, p * h * w)  # (C, P*HW)
    gram = torch.mm(q, r).reshape(d, h * w, p, h * w)  # one GEMM for all P x D pairs
    return _finish(_gram_to_corr(gram, h, w, window), c, patch, normalize)


# ----------------------------------------------------------------------------- public API


def correlate(a: torch.Tensor, b: torch.Tensor, *, patch: int = 0, window: int = 7,
              normalize: bool = True, impl: str = "fast") -> torch.Tensor:
    """Correlate query ``a`` with reference ``b`` pair by pair (eq. 15).

    Args:
        a, b: (N, C, H, W) query and reference features; pair n is (a[n], b[n]).
        patch: s, the patch is (2s+1) x (2s+1).
        window: W (odd), the displacements form a W x W neighbourhood.
        normalize: divide by C * (2s+1)^2.
        impl: "fast" (GEMM + gather) or "reference" (loop over displacements).

    Returns:
        (N, window * window, H, W), channel ``dy_idx * window + dx_idx``.
    """
    _check(a, b, patch, window, impl)
    if impl == "reference":
        return _correlate_reference(a, b, patch, window, normalize)
    return _correlate_fast(a, b, patch, window, normalize)


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
    return _correlate_all_pairs_fast(ref, query, patch, window, normalize)
