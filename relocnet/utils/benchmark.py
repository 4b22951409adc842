"""Benchmark helpers (machine description, timing, tables, the final JSON line) and the
correlation benchmark: the eq. 15 op against the same machine's GEMM and against alternatives.

Flops: "useful" flops are those of eq. 15 itself, ``2 * C * H * W * window**2`` per pair plus the
patch box filter (:func:`relocnet.modeling.correlation.useful_flops`); a forward + backward does
3 x that (the backward is two contractions of the same size, one per input). Products the fast
path computes and throws away (columns and rows of its GEMM blocks outside the window) are not
counted, so "achieved GFLOP/s" is useful work per second and its ratio to the GEMM rate is the
fraction of the machine's matrix-multiplication speed that reaches the result.

The GEMM rate is measured in the same run: ``torch.mm`` of the op's operands as one matrix
product, (D*H*W x C) @ (C x P*H*W), fp32 contiguous, before and after each case (the faster of
the two is kept: it gives the op the smaller fraction).
"""
import datetime
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..modeling.correlation import (_correlate_banded, computed_flops, correlate_all_pairs,
                                    rows_per_block, useful_flops)

__all__ = ["machine_info", "time_call", "format_table", "emit", "gemm_gflops",
           "correlation_cases", "spatial_correlation_sampler", "run_correlation_benchmark"]

TARGETS = {"cpu": 0.40, "cuda": 0.50}  # fraction of the GEMM rate (issue 4)
TARGET_SPEEDUP_REFERENCE = 20.0


# ----------------------------------------------------------------------------- generic helpers


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str = "cpu") -> Dict[str, Any]:
    """CPU model, cores, torch version and threads, load average, date; the GPU if ``device``
    is cuda."""
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def time_call(fn: Callable[[], Any], *, repeat: int, device: str = "cpu",
              warmup: int = 1) -> Dict[str, float]:
    """Wall seconds of ``fn()``: ``min`` and ``median`` over ``repeat`` calls after ``warmup``.
    The minimum is the least disturbed by other processes; both are reported."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return {"min": min(times), "median": statistics.median(times)}


def format_table(rows: Sequence[Dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table (floats below 100 with 3 significant digits, larger ones rounded)."""
    def cell(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return "" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def emit(text: str, result: Dict[str, Any]) -> None:
    """Print the human-readable report, then the result as one JSON line (always last)."""
    print(text, flush=True)
    print(json.dumps(result, sort_keys=True), flush=True)


# ----------------------------------------------------------------------------- GEMM baseline


def gemm_gflops(m: int, k: int, n: int, *, device: str, repeat: int) -> Dict[str, float]:
    """GFLOP/s of torch.mm (m x k) @ (k x n), fp32 contiguous (2*m*k*n flops)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=g).to(device)
    b = torch.randn(k, n, generator=g).to(device)
    t = time_call(lambda: torch.mm(a, b), repeat=repeat, device=device)
    return {"m": m, "k": k, "n": n, "seconds": t["min"], "gflops": 2.0 * m * k * n / t["min"] / 1e9}


# ----------------------------------------------------------------------------- alternatives


def _shifted_einsum(ref: torch.Tensor, query: torch.Tensor, patch: int, window: int
                    ) -> torch.Tensor:
    """Alternative measured for docs/BENCHMARKS.md: one einsum per displacement over shifted
    views (the reference's loop with the product and channel sum fused), then the box filter."""
    p, c, h, w = ref.shape
    r = window // 2
    pad = F.pad(ref, (r, r, r, r))
    maps = [torch.einsum("dchw,pchw->pdhw", query,
                         pad[:, :, r + dy: r + dy + h, r + dx: r + dx + w])
            for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    corr = torch.stack(maps, dim=2).flatten(0, 1)  # (P*D, W^2, H, W)
    k = 2 * patch + 1
    corr = corr / (c * k * k)
    if patch:
        corr = F.conv2d(corr, corr.new_ones(window * window, 1, k, k), padding=patch,
                        groups=window * window)
    return corr


def spatial_correlation_sampler() -> Dict[str, Any]:
    """Whether the ``spatial_correlation_sampler`` package imports; its op if so."""
    try:
        from spatial_correlation_sampler import SpatialCorrelationSampler  # type: ignore
    except Exception as exc:  # ImportError, or a broken compiled backend (OSError, ...)
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    return {"available": True, "op": SpatialCorrelationSampler}


def _scs_fn(op_cls, ref, query, patch, window):
    """spatial-correlation-sampler on the same pairs (it correlates pairwise: the query is
    repeated per proposal), normalized like ours; returns (P*D, W^2, H, W)."""
    op = op_cls(kernel_size=2 * patch + 1, patch_size=window, stride=1, padding=patch,
                dilation_patch=1)
    p, d = ref.shape[0], query.shape[0]
    k = 2 * patch + 1

    def run():
        a = query.repeat(p, 1, 1, 1)
        b = ref.repeat_interleave(d, dim=0)
        out = op(a, b)  # (P*D, W, W, H, W)
        return out.flatten(1, 2) / (ref.shape[1] * k * k)
    return run


# ----------------------------------------------------------------------------- correlation


def correlation_cases(quick: bool) -> List[Dict[str, int]]:
    """The paper's shapes (14 x 14 x 1600 ROI features, W = 7, s = 0 and 1, P = 16 and 100
    proposals against D = 1 query), or tiny ones for tests."""
    if quick:
        return [dict(P=4, D=1, C=32, H=6, W=6, window=3, patch=s) for s in (0, 1)]
    return [dict(P=p, D=1, C=1600, H=14, W=14, window=7, patch=s)
            for p in (16, 100) for s in (0, 1)]


def _measure(fn: Callable[[], torch.Tensor], inputs: Sequence[torch.Tensor], *, repeat: int,
             device: str) -> Dict[str, float]:
    def fwd():
        with torch.no_grad():
            fn()

    def fwd_bwd():
        for x in inputs:
            x.grad = None
        fn().square().sum().backward()
    return {"fwd": time_call(fwd, repeat=repeat, device=device)["min"],
            "fwd_bwd": time_call(fwd_bwd, repeat=repeat, device=device)["min"]}


def _bench_case(case: Dict[str, int], *, device: str, repeat: int, slow_max_pairs: int,
                scs: Dict[str, Any], rows_sweep: bool = False) -> Dict[str, Any]:
    P, D, C, H, W, win, s = (case[k] for k in ("P", "D", "C", "H", "W", "window", "patch"))
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(P, C, H, W, generator=g).to(device).requires_grad_()
    query = torch.randn(D, C, H, W, generator=g).to(device).requires_grad_()
    useful = useful_flops(P * D, C, H, W, win, s)
    gemm = gemm_gflops(D * H * W, C, P * H * W, device=device, repeat=repeat)
    rows = rows_per_block(H, W, win, C, P * D)
    fast_out = correlate_all_pairs(ref, query, patch=s, window=win).detach()
    n_slow = min(P, slow_max_pairs)  # slow alternatives run on fewer pairs, scaled linearly
    impls: Dict[str, Callable[[], torch.Tensor]] = {
        "fast": lambda: correlate_all_pairs(ref, query, patch=s, window=win),
        "gram": lambda: correlate_all_pairs(ref, query, patch=s, window=win, impl="gram"),
        "reference": lambda: correlate_all_pairs(ref[:n_slow], query, patch=s, window=win,
                                                 impl="reference"),
        "shifted_einsum": lambda: _shifted_einsum(ref[:n_slow], query, s, win),
    }
    if rows_sweep:  # the fast path with every block size (rows=H is "gram")
        for k in range(1, H):
            impls[f"rows={k}"] = (lambda k=k: _correlate_banded(ref, query.unsqueeze(0), s, win,
                                                                True, k))
    if scs["available"]:
        impls["spatial_correlation_sampler"] = _scs_fn(scs["op"], ref[:n_slow], query, s, win)
    out: Dict[str, Any] = dict(case, rows_per_block=rows, useful_gflop=useful / 1e9,
                               gemm_gflops_start=gemm["gflops"],
                               computed_over_useful=computed_flops(P * D, C, H, W, win, rows)
                               / useful_flops(P * D, C, H, W, win),
                               gemm_gflops=gemm["gflops"], impls={})
    for name, fn in impls.items():
        slow = name in ("reference", "shifted_einsum", "spatial_correlation_sampler")
        scale = P / n_slow if slow else 1.0
        t = _measure(fn, (ref, query), repeat=1 if slow else repeat, device=device)
        with torch.no_grad():
            res = fn()
        expect = fast_out[: res.shape[0]]
        err = ((res - expect).abs().max() / expect.abs().max().clamp_min(1e-30)).item()
        fwd, fwd_bwd = t["fwd"] * scale, t["fwd_bwd"] * scale
        out["impls"][name] = {
            "fwd_ms": fwd * 1e3, "fwd_bwd_ms": fwd_bwd * 1e3,
            "gflops_fwd": useful / fwd / 1e9, "gflops_fwd_bwd": 3 * useful / fwd_bwd / 1e9,
            "gemm_fraction_fwd": useful / fwd / 1e9 / gemm["gflops"],
            "gemm_fraction_fwd_bwd": 3 * useful / fwd_bwd / 1e9 / gemm["gflops"],
            "pairs_timed": n_slow if slow else P, "max_rel_diff_vs_fast": err,
        }
    # the GEMM again after the op: other processes slow runs down unevenly, and the higher of
    # the two rates (the smaller fraction for the op) is the machine's GEMM speed
    end = gemm_gflops(D * H * W, C, P * H * W, device=device, repeat=repeat)["gflops"]
    out["gemm_gflops_end"] = end
    if end > gemm["gflops"]:
        out["gemm_gflops"] = end
        for r in out["impls"].values():
            r["gemm_fraction_fwd"] = r["gflops_fwd"] / end
            r["gemm_fraction_fwd_bwd"] = r["gflops_fwd_bwd"] / end
    fast = out["impls"]["fast"]
    for name, r in out["impls"].items():
        r["fast_speedup_fwd"] = r["fwd_ms"] / fast["fwd_ms"]
        r["fast_speedup_fwd_bwd"] = r["fwd_bwd_ms"] / fast["fwd_bwd_ms"]
    return out


def run_correlation_benchmark(*, device: str = "cpu", repeat: int = 5, quick: bool = False,
                              slow_max_pairs: int = 16, rows_sweep: bool = False
                              ) -> Tuple[str, Dict[str, Any]]:
    """Time every case and implementation; returns (table text, result dict). ``rows_sweep``
    adds the fast path with every block size."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch.cuda.is_available() is False")
    scs = spatial_correlation_sampler()
    cases = [_bench_case(c, device=device, repeat=repeat, slow_max_pairs=slow_max_pairs, scs=scs,
                         rows_sweep=rows_sweep) for c in correlation_cases(quick)]
    target = TARGETS["cuda" if device.startswith("cuda") else "cpu"]
    rows = []
    for c in cases:
        for name, r in c["impls"].items():
            rows.append({
                "P": c["P"], "D": c["D"], "CxHxW": f"{c['C']}x{c['H']}x{c['W']}",
                "win": c["window"], "s": c["patch"], "impl": name, "fwd ms": r["fwd_ms"],
                "fwd+bwd ms": r["fwd_bwd_ms"],
                "GF/s fwd": r["gflops_fwd"], "GF/s f+b": r["gflops_fwd_bwd"],
                "GEMM GF/s": c["gemm_gflops"], "%GEMM fwd": 100 * r["gemm_fraction_fwd"],
                "%GEMM f+b": 100 * r["gemm_fraction_fwd_bwd"],
                "fast x fwd": r["fast_speedup_fwd"], "fast x f+b": r["fast_speedup_fwd_bwd"],
                "pairs timed": r["pairs_timed"],
            })
    fast = [c["impls"]["fast"] for c in cases]
    ref_speedups = [c["impls"]["reference"]["fast_speedup_fwd"] for c in cases]
    summary = {
        "gemm_fraction_fwd_min": min(f["gemm_fraction_fwd"] for f in fast),
        "gemm_fraction_fwd_bwd_min": min(f["gemm_fraction_fwd_bwd"] for f in fast),
        "speedup_vs_reference_fwd_min": min(ref_speedups),
        "speedup_vs_reference_fwd_bwd_min": min(c["impls"]["reference"]["fast_speedup_fwd_bwd"]
                                                for c in cases),
    }
    targets = {
        "gemm_fraction": target, "speedup_vs_reference": TARGET_SPEEDUP_REFERENCE,
        "gemm_fraction_met": summary["gemm_fraction_fwd_min"] >= target,
        "speedup_vs_reference_met": summary["speedup_vs_reference_fwd_min"]
        >= TARGET_SPEEDUP_REFERENCE,
    }
    if scs["available"]:
        targets["faster_than_spatial_correlation_sampler"] = all(
            c["impls"]["spatial_correlation_sampler"]["fast_speedup_fwd"] > 1 for c in cases)
    result = {
        "benchmark": "correlation", "machine": machine_info(device), "quick": quick,
        "repeat": repeat, "rows_sweep": rows_sweep, "cases": cases, "summary": summary,
        "targets": targets,
        "spatial_correlation_sampler": {k: v for k, v in scs.items() if k != "op"},
    }
    cols = ["P", "D", "CxHxW", "win", "s", "impl", "fwd ms", "fwd+bwd ms", "GF/s fwd", "GF/s f+b",
            "GEMM GF/s", "%GEMM fwd", "%GEMM f+b", "fast x fwd", "fast x f+b", "pairs timed"]
    m = result["machine"]
    notes = [
        f"correlation benchmark on {device} ({m['cpu']}, {m['cores']} cores, torch {m['torch']}, "
        f"{m['threads']} threads, load average {m['load_avg_1min']}, {m['date']})",
        "GF/s = useful flops of eq. 15 (2*C*H*W*W^2 per pair + box filter; x3 for fwd+bwd) per "
        "second; %GEMM = that over torch.mm of (D*HW x C) @ (C x P*HW) in the same run (the "
        "faster of two runs, before and after the case); "
        "'fast x' = time of the impl / time of fast; slow impls are timed on 'pairs timed' pairs "
        "and scaled linearly to P.",
        "spatial-correlation-sampler: " + ("measured" if scs["available"]
                                           else f"not available ({scs['reason']})"),
    ]
    return "\n".join(notes + ["", format_table(rows, cols)]), result
