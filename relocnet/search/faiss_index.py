"""The FAISS index of every indexed second: chosen by size, built in chunks, searched by id.

Every index first centres the descriptors on the archive's mean (or, above MAX_DIM dimensions
and for the compressed indexes, projects them by PCA, which centres too) and L2-normalizes them
again, then compares by inner product: cosine similarity of centred descriptors (without
centring, the backbone's average picture, e.g. its response to a common background, dominates
every similarity). The core index (``choose_factory(n, dim)``): an exact ``Flat`` index up to
EXACT_MAX vectors (about 70 hours of video); above, ``IVF<nlist>_HNSW32,PQ<m>``: an inverted
file whose coarse quantizer is an HNSW graph (adding tens of millions of vectors stays cheap),
with product-quantized codes of ``m`` bytes per second after PCA to at most IVF_DIM dimensions
and a random rotation (``PCAR``: it spreads the variance, which real descriptors concentrate in
a few principal axes, evenly over the PQ sub-vectors; without it, recall 10@100 was 0.63 instead
of 0.98 on generated descriptors shaped like real ones).
A vector's id packs the video's position in the snapshot's video list and the second:
``video << SECOND_BITS | second``.
"""
from typing import Callable, Dict, Iterable, Iterator, Tuple

import faiss
import numpy as np

__all__ = ["EXACT_MAX", "MAX_DIM", "SECOND_BITS", "choose_factory", "build_index", "pack_ids",
           "unpack_ids", "make_index", "train_size", "train_index", "set_search_params", "index_bytes"]

EXACT_MAX = 250_000
MAX_DIM = 512  # the exact index reduces longer descriptors to MAX_DIM // 2 by PCA
IVF_DIM = 128  # the compressed index reduces longer descriptors to IVF_DIM by PCA
SECOND_BITS = 24  # seconds per video < 2**24 (194 days)
TRAIN_PER_LIST = 40  # IVF training vectors per inverted list (and at most TRAIN_MAX)
TRAIN_MAX = 100_000
KMEANS_ITERATIONS = 10

Chunks = Callable[[], Iterable[Tuple[np.ndarray, np.ndarray]]]  # -> (ids int64, vectors f32)


def choose_factory(n: int, dim: int) -> Dict[str, object]:
    """The index for ``n`` vectors of ``dim`` dimensions: {"factory" (the core index's FAISS
    factory string), "pca" (output dimensions, 0: centring only), "nprobe", "description"}."""
    if n <= EXACT_MAX:
        pca, factory, nprobe = (MAX_DIM // 2 if dim > MAX_DIM else 0), "IDMap2,Flat", 0
    else:
        pca = IVF_DIM if dim > IVF_DIM else 0
        d = pca or dim
        # about sqrt(n) / 2 lists, at most 2048: k-means training stays under a minute on a core
        nlist = int(np.clip(2 ** round(np.log2(np.sqrt(n) / 2)), 256, 2048))
        m = 32 if d % 32 == 0 else max(k for k in (24, 16, 12, 8, 4, 1) if d % k == 0)
        factory, nprobe = f"IVF{nlist}_HNSW32,PQ{m}", 32
    pre = f"PCAR{pca}" if pca else "Center"
    return {"factory": factory, "pca": pca, "nprobe": nprobe,
            "description": f"{pre},L2norm,{factory.replace('IDMap2,', '')}"}


def pack_ids(video: int, seconds: np.ndarray) -> np.ndarray:
    return (np.int64(video) << SECOND_BITS) | seconds.astype(np.int64)


def unpack_ids(ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(video positions, seconds) of packed ids (-1 stays -1 in both)."""
    ids = np.asarray(ids, dtype=np.int64)
    bad = ids < 0
    video = np.where(bad, -1, ids >> SECOND_BITS)
    return video, np.where(bad, -1, ids & ((1 << SECOND_BITS) - 1))


def _train_sample(chunks: Chunks, n: int, size: int) -> np.ndarray:
    """About ``size`` vectors spread evenly over the chunks (deterministic)."""
    step = max(1, n // size)
    out, offset = [], 0
    for _, vecs in chunks():
        first = (-offset) % step
        out.append(vecs[first::step])
        offset += len(vecs)
    return np.ascontiguousarray(np.concatenate(out)[:size], dtype=np.float32)


def make_index(dim: int, params: Dict[str, object]) -> faiss.Index:
    """An empty, untrained index of choose_factory's ``params``."""
    d = int(params["pca"]) or dim
    core = faiss.index_factory(d, str(params["factory"]), faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexPreTransform(faiss.NormalizationTransform(d, 2.0), core)
    index.prepend_transform(faiss.PCAMatrix(dim, d, 0, True) if params["pca"]
                            else faiss.CenteringTransform(dim))
    return index


def train_size(params: Dict[str, object], n: int) -> int:
    """Training vectors for an index of choose_factory's ``params`` holding ``n`` vectors."""
    factory = str(params["factory"])
    nlist = int(factory.split(",")[0].split("_")[0][3:]) if factory.startswith("IVF") else 0
    return min(n, max(20_000, min(TRAIN_MAX, nlist * TRAIN_PER_LIST)))


def train_index(index: faiss.Index, sample: np.ndarray, params: Dict[str, object]) -> None:
    if str(params["factory"]).startswith("IVF"):
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.do_polysemous_training = False  # minutes of training for a Hamming filter unused here
        ivf.pq.cp.niter = KMEANS_ITERATIONS
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    set_search_params(index, int(params["nprobe"]))


def build_index(chunks: Chunks, n: int, dim: int, params: Dict[str, object],
                progress: Callable[[int], None] = None) -> faiss.Index:
    """A trained index holding every (id, vector) of ``chunks()`` (called twice: training
    sample, then adding)."""
    index = make_index(dim, params)
    if n == 0:
        return index
    train_index(index, _train_sample(chunks, n, train_size(params, n)), params)
    for ids, vecs in chunks():
        index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), ids)
        if progress is not None:
            progress(len(ids))
    return index


def set_search_params(index: faiss.Index, nprobe: int) -> None:
    """Inverted lists visited per query vector (IVF indexes only)."""
    if nprobe:
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)


def index_bytes(index: faiss.Index) -> int:
    """Size of the index serialized (what it takes in memory, within a few percent)."""
    return int(faiss.serialize_index(index).nbytes)


def iter_rows(arrays: Iterator[Tuple[int, np.ndarray]]) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(ids, vectors) chunks of (video position, (seconds, dim) descriptors) items."""
    for video, desc in arrays:
        if len(desc):
            yield pack_ids(video, np.arange(len(desc))), desc
