"""Coarse search at archive scale (1,000 / 10,000 hours) on GENERATED descriptors.

Decoding 10,000 hours is out of reach here, so the descriptors are generated, video by video
(VIDEO_SECONDS each): a per-video base point plus a temporally smooth walk (a box filter over
SMOOTH_SECONDS of noise), in the principal axes of real descriptors and scaled by their standard
deviations (``stats``: the descriptors of an indexed archive, e.g. the real archive of
``tools/benchmark.py archive``; else isotropic), L2-normalized. To keep 36 M of them within
minutes of CPU, one chunk of CHUNK_VIDEOS videos is drawn, and every further chunk flips the
signs of its principal coordinates at random per video (same mean and covariance, new videos). Queries are copies: QUERY_SECONDS consecutive generated seconds (of the first
chunk's videos) plus noise (cosine ~COPY_COSINE to their source). The index is the one ``relocnet index`` chooses for that
size (faiss_index.choose_factory), built in chunks; exact search runs over the same descriptors
(centred and normalized like the index's input) chunk by chunk, for the recall of the index.

Reported per size: index type, build time, index bytes (and per hour of video), peak RSS of the
process, coarse search time per query (FAISS search of the query seconds + temporal voting) on
``threads`` threads, 1-recall@1 and 10-recall@100 of the index against exact search, and the
fraction of queries whose source (video, offset +-2 s) is the first voted candidate, with the
index's neighbours and with the exact ones.
"""
import resource
import time
from typing import Any, Dict, List, Optional, Tuple

import faiss
import numpy as np

from .faiss_index import (choose_factory, make_index, pack_ids, set_search_params, train_index,
                          train_size, unpack_ids)
from .voting import vote

__all__ = ["run_scale_benchmark", "descriptor_stats"]

VIDEO_SECONDS = 600
SMOOTH_SECONDS = 5
QUERY_SECONDS = 8
COPY_COSINE = 0.8
CHUNK_VIDEOS = 500  # 300k seconds per chunk


def descriptor_stats(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, principal axes (d, d), standard deviations (d,)) of real descriptors."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    std = s / np.sqrt(max(1, len(x) - 1))
    return mean, vt, std


def _template(stats, seed: int) -> np.ndarray:
    """(CHUNK_VIDEOS, VIDEO_SECONDS, d) per-video base + smooth walk, in principal coordinates
    (unit variance per axis)."""
    rng = np.random.default_rng([seed, 0])
    d = len(stats[2])
    base = rng.standard_normal((CHUNK_VIDEOS, 1, d), dtype=np.float32)
    noise = rng.standard_normal((CHUNK_VIDEOS, VIDEO_SECONDS + SMOOTH_SECONDS, d),
                                dtype=np.float32)
    c = np.cumsum(noise, axis=1)
    walk = c[:, SMOOTH_SECONDS:] - c[:, :-SMOOTH_SECONDS]
    walk *= 0.6 / SMOOTH_SECONDS**0.5
    walk += 0.8 * base
    return walk


def _chunk(k: int, stats, template: np.ndarray, seed: int) -> np.ndarray:
    """(CHUNK_VIDEOS * VIDEO_SECONDS, dim) float32 descriptors of chunk k (deterministic): the
    template's videos with their principal coordinates' signs flipped at random per video and
    chunk (the same distribution up to second order, new videos), scaled and rotated back."""
    mean, axes, std = stats
    d = len(std)
    rng = np.random.default_rng([seed, k + 1])
    signs = np.where(rng.random((CHUNK_VIDEOS, 1, d)) < 0.5, -1.0, 1.0).astype(np.float32)
    if k == 0:
        signs[:] = 1.0
    z = (template * (signs * std)).reshape(-1, d)
    x = z @ axes[:d] + mean
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32, copy=False)


def _queries(template: np.ndarray, stats, seed: int, n: int) -> Tuple[np.ndarray, List]:
    """Copies of n random spans of the first chunk's videos (every video is drawn the same way):
    noise like the descriptors' own variation (in principal coordinates, scaled by their standard
    deviations) so that a copy's centred cosine to its source is about COPY_COSINE.
    Returns (n, QUERY_SECONDS, dim) and their (video, start)."""
    mean, axes, std = stats
    rng = np.random.default_rng([seed, 10**6])
    where = [(int(rng.integers(CHUNK_VIDEOS)), int(rng.integers(VIDEO_SECONDS - QUERY_SECONDS)))
             for _ in range(n)]
    z = np.stack([template[v, s : s + QUERY_SECONDS] for v, s in where])
    z = z + rng.standard_normal(z.shape, dtype=np.float32) * np.sqrt(1 / COPY_COSINE**2 - 1)
    x = (z * std) @ axes[: len(std)] + mean
    return (x / np.linalg.norm(x, axis=2, keepdims=True)).astype(np.float32), where


def _exact_topk(best: Tuple[np.ndarray, np.ndarray], q: np.ndarray, x: np.ndarray,
                ids: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merge the chunk's exact top-k (inner product) into ``best``."""
    sims = q @ x.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    s = np.concatenate([best[0], np.take_along_axis(sims, top, 1)], 1)
    i = np.concatenate([best[1], ids[top]], 1)
    order = np.argsort(-s, axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)


def _build(hours: float, stats, dim: int, seed: int, num_queries: int, log):
    """The index of ``hours`` of generated descriptors, the copy queries, their sources and
    their exact top-100."""
    chunks = int(np.ceil(hours * 3600 / (CHUNK_VIDEOS * VIDEO_SECONDS)))
    n = chunks * CHUNK_VIDEOS * VIDEO_SECONDS
    params = choose_factory(n, dim)
    index = make_index(dim, params)
    t0 = time.perf_counter()
    template = _template(stats, seed)
    first = _chunk(0, stats, template, seed)
    queries, truth = _queries(template, stats, seed, num_queries)
    sample = first[:: max(1, len(first) // train_size(params, n))]
    train_index(index, sample, params)
    mean = sample.mean(0)
    q = queries.reshape(-1, dim) - mean
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best = (np.full((len(q), 100), -np.inf, np.float32), np.zeros((len(q), 100), np.int64))
    exact_s = 0.0
    for k in range(chunks):
        x = first if k == 0 else _chunk(k, stats, template, seed)
        ids = np.concatenate([pack_ids(v, np.arange(VIDEO_SECONDS))
                              for v in range(k * CHUNK_VIDEOS, (k + 1) * CHUNK_VIDEOS)])
        index.add_with_ids(x, ids)
        t = time.perf_counter()
        xc = x - mean
        xc /= np.linalg.norm(xc, axis=1, keepdims=True)
        best = _exact_topk(best, q, xc, ids, 100)
        exact_s += time.perf_counter() - t
        log(f"  {hours:g} h: chunk {k + 1}/{chunks} ({index.ntotal} vectors)")
    build_s = time.perf_counter() - t0 - exact_s
    return index, params, queries, truth, best, n, build_s


def _search(index, queries: np.ndarray, n_videos: int, threads: int, build_threads: int):
    """Per-query seconds of coarse search (+ voting), the index's ids and first candidates."""
    faiss.omp_set_num_threads(threads)
    times, all_ids, firsts = [], [], []
    lengths = np.full(n_videos, VIDEO_SECONDS)
    for q in queries:
        t = time.perf_counter()
        sims, ids = index.search(q, 100)
        videos, seconds = unpack_ids(ids)
        cands = vote(videos, seconds, sims, lengths, max_candidates=10)
        times.append(time.perf_counter() - t)
        all_ids.append(ids)
        firsts.append(cands[0] if cands else None)
    faiss.omp_set_num_threads(build_threads)
    return times, np.concatenate(all_ids), firsts


def _index_bytes(index) -> int:
    writer = faiss.VectorIOWriter()
    faiss.write_index(index, writer)
    return int(writer.data.size())


def run_scale_benchmark(hours: List[float], *, real: Optional[np.ndarray] = None,
                        dim: int = 144, queries: int = 25, threads: int = 2, seed: int = 0,
                        build_threads: int = 1, log=print) -> Tuple[str, Dict[str, Any]]:
    """Build and search a generated archive of each size; (table text, result dict)."""
    stats = descriptor_stats(real) if real is not None else (
        np.zeros(dim, np.float32), np.eye(dim, dtype=np.float32), np.ones(dim, np.float32))
    dim = len(stats[0])
    rows = []
    for h in hours:
        index, params, qv, truth, (exact_sims, exact), n, build_s = _build(h, stats, dim, seed,
                                                                           queries, log)
        times, got, firsts = _search(index, qv, n // VIDEO_SECONDS, threads, build_threads)
        lengths = np.full(n // VIDEO_SECONDS, VIDEO_SECONDS)
        exact_firsts = [vote(*unpack_ids(i), s, lengths, max_candidates=1)
                        for i, s in zip(exact.reshape(len(qv), -1, 100),
                                        exact_sims.reshape(len(qv), -1, 100))]
        r1 = float(np.mean(got[:, 0] == exact[:, 0]))
        r10 = float(np.mean([len(set(e[:10]) & set(g)) / 10 for e, g in zip(exact, got)]))
        found = float(np.mean([f is not None and f.video == v and abs(f.start - s) <= 2
                               for f, (v, s) in zip(firsts, truth)]))
        found_exact = float(np.mean([bool(f) and f[0].video == v and abs(f[0].start - s) <= 2
                                     for f, (v, s) in zip(exact_firsts, truth)]))
        size = _index_bytes(index)
        rows.append({"hours": round(n / 3600, 1), "vectors": int(n), "index": params["description"],
                     "nprobe": params["nprobe"], "build_s": round(build_s, 1),
                     "index_MiB": round(size / 2**20, 1),
                     "MiB_per_hour": round(size / 2**20 / (n / 3600), 3),
                     "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                     "search_ms_median": round(1000 * float(np.median(times)), 1),
                     "search_ms_max": round(1000 * float(np.max(times)), 1),
                     "recall_1@1": round(r1, 3), "recall_10@100": round(r10, 3),
                     "copy_source_first": round(found, 3),
                     "copy_source_first_exact": round(found_exact, 3)})
        del index
    cols = list(rows[0])
    text = "\n".join(["  ".join(f"{c}" for c in cols)] +
                     ["  ".join(str(r[c]) for c in cols) for r in rows])
    return text, {"archive_scale": rows, "threads": threads, "queries": queries,
                  "query_seconds": QUERY_SECONDS, "descriptors": "generated",
                  "stats": "real archive" if real is not None else "isotropic"}
