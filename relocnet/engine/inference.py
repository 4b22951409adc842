"""Re-localization of a query in a reference video of any length, streamed.

The reference is decoded second by second (``iter_subclips`` at INPUT.VIDEO.FPS and size) and
cut into the model's windows (REFERENCE_SECONDS, WINDOW_OVERLAP, ``window_starts``); the
backbone runs on ``windows_per_batch`` windows at a time, exactly the batches of the model's own
``inference_one``, and the model's ``relocalize_windows`` (the generator ``inference_one`` runs
too) scores them and merges the per-second results over windows. Memory holds at most ``REFERENCE_SECONDS + windows_per_batch - 1`` decoded seconds, one
batch of features, and the per-second results of the seconds that a later window still covers;
what the whole reference leaves behind is one score per second (and, spatio-temporal, at most
DETECTIONS_PER_SECOND boxes per second), so memory does not grow with the reference's length.

What is kept per window batch, and cached (feature_cache.py): the backbone's ``"features"`` of
each window (n, C, h, w), which do not depend on the query; for RelocRCNN also the RPN proposals
of the seconds first seen in the batch (RelocRCNN proposes once per second, from its first
window; proposals do not depend on the query either). Keeping full feature maps rather than ROI
features is the smaller choice for both models (C x h x w per second vs C x S x S per proposal)
and lets a cache hit replay the very same head calls: cached and computed scores are equal.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from ..data.mapper import (as_box_list, nearest_boxes, query_box_inputs, query_inputs,
                           seconds_of_span)
from ..data.video import VideoDecodeError, VideoInfo, iter_subclips, probe_video, read_subclips
from ..modeling.meta_arch import RelocMetaArchBase
from ..modeling.windows import window_starts
from ..modeling.weights import pretrained_keys, trained_state_dict
from .feature_cache import CacheReadError, FeatureCache, file_digest, model_digest

__all__ = ["InputError", "WeightsError", "load_model", "pretrained_keys", "trained_state_dict", "prepare_query", "stream_windows",
           "check_lengths", "nearest_boxes", "relocalize", "Relocalization", "check_pair_task",
           "predict_pair_file"]


class InputError(ValueError):
    """A query/reference that cannot be re-localized (span, boxes, lengths)."""


class WeightsError(ValueError):
    """A weights file that cannot be read or does not fit the model built from the config."""


class _RecordingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys instead of only logging them."""

    incompatible = None

    def _log_incompatible_keys(self, incompatible) -> None:
        self.incompatible = incompatible


def load_model(cfg, weights: str) -> RelocMetaArchBase:
    """Build the config's model in eval mode and load ``weights`` (\"\" = keep the random
    initialization, seeded). Every parameter must be found with its shape, else WeightsError."""
    with torch.random.fork_rng(devices=[]):  # the same initialization every time
        torch.manual_seed(0)
        model = build_model(cfg).eval()
    if not getattr(model, "task", ""):
        raise WeightsError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} is not a "
                           "relocnet model (RelocTemporal or RelocRCNN)")
    if not weights:
        return model
    ckpt = _RecordingCheckpointer(model)
    try:
        ckpt.load(weights)
    except Exception as exc:  # torch.load / pickle raise many types for a file that is no checkpoint
        first = str(exc).split(". ")[0][:160]
        raise WeightsError(f"cannot read weights {weights}: not a checkpoint torch.load(weights_only="
                           f"True) accepts ({type(exc).__name__}: {first})") from exc
    bad = ckpt.incompatible
    if bad is None:
        return model
    frozen = pretrained_keys(model)  # built from pretrained weights: a checkpoint may omit them
    problems = [f"{k} is {tuple(a)} in the file but {tuple(b)} in the model"
                for k, a, b in bad.incorrect_shapes[:3]]
    reshaped = {k for k, _, _ in bad.incorrect_shapes}
    missing = [k for k in bad.missing_keys if k not in reshaped and k not in frozen]
    if missing:
        problems.append(f"{len(missing)} parameters missing (e.g. {missing[0]})")
    if bad.unexpected_keys:
        problems.append(f"{len(bad.unexpected_keys)} unexpected parameters "
                        f"(e.g. {bad.unexpected_keys[0]})")
    if problems:
        n = len(bad.incorrect_shapes)
        more = f" ({n} shape mismatches in all)" if n > 3 else ""
        raise WeightsError(f"weights {weights} do not fit the config "
                           f"({cfg.MODEL.META_ARCHITECTURE}): " + "; ".join(problems) + more)
    return model


# ----------------------------------------------------------------------------- query


def prepare_query(path: str, *, fps: int, size: Tuple[int, int], query_seconds: int,
                  min_seconds: int = 1, start: Optional[float] = None, end: Optional[float] = None,
                  boxes: Optional[Dict[int, Any]] = None
                  ) -> Tuple[Dict[str, Any], VideoInfo, List[int]]:
    """The model's query inputs (``query``, ``query_valid``, ``query_boxes`` when ``boxes``) of the
    span [start, end) of ``path`` (default: all of it), padded like RelocPairMapper; the query's
    VideoInfo and its seconds. ``boxes``: {second: D boxes, or one box, in pixels of the query
    file} (a pair file's ``query.boxes``); a second
    without boxes takes the nearest annotated second's. Longer queries than QUERY_SECONDS are
    kept whole (the model windows them)."""
    info = probe_video(path)
    start = 0.0 if start is None else float(start)
    end = info.duration if end is None else float(end)
    if not 0 <= start < end:
        raise InputError(f"query span [{start:g}, {end:g}) s is empty or negative")
    if end > info.duration + 0.5 / info.fps:
        raise InputError(f"query span [{start:g}, {end:g}) s ends after the query video "
                         f"{path} ({info.duration:.2f} s)")
    seconds = [t for t in seconds_of_span(start, end) if t < info.num_seconds]
    if len(seconds) < max(1, min_seconds):
        raise InputError(f"query span [{start:g}, {end:g}) s of {path} holds {len(seconds)} whole "
                         f"second(s); the model needs at least {max(1, min_seconds)}")
    frames = read_subclips(path, fps, size, seconds[0], seconds[-1] + 1)[: len(seconds)]
    out = query_inputs(frames, query_seconds)
    if boxes is not None:
        boxes = {t: as_box_list(b) for t, b in boxes.items()}
        _check_boxes(boxes, info, path)
        h, w = size
        out["query_boxes"] = torch.from_numpy(query_box_inputs(
            boxes, seconds, len(out["query"]), (w / info.width, h / info.height)))
    return out, info, seconds


def _check_boxes(boxes: Dict[int, List[List[float]]], info: VideoInfo, path: str) -> None:
    """InputError unless every annotated second has the same number (>= 1) of boxes with an
    area inside the query's frame."""
    if not boxes:
        raise InputError("no query boxes given")
    counts = {len(b) for b in boxes.values()}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"every query second needs the same number (>= 1) of boxes; got "
                         f"{sorted(counts)}")
    for t, per in boxes.items():
        if not 0 <= t < info.num_seconds:
            raise InputError(f"query boxes given for second {t}, outside the query video {path} "
                             f"(seconds 0..{info.num_seconds - 1})")
        for b in per:
            x1, y1, x2, y2 = b
            if not (x2 > x1 and y2 > y1):
                raise InputError(f"query box {list(b)} (second {t}) has no area")
            if x1 < 0 or y1 < 0 or x2 > info.width or y2 > info.height:
                raise InputError(f"query box {list(b)} (second {t}) lies outside the "
                                 f"{info.width}x{info.height} frame of {path}")


# ----------------------------------------------------------------------------- reference


def stream_windows(path: str, *, fps: int, size: Tuple[int, int], length: int, window: int,
                   overlap: int, per_batch: int) -> Iterator[Tuple[List[int], List[torch.Tensor]]]:
    """(window starts, uint8 windows (n, N, H, W, 3)) per backbone batch, decoded on the fly;
    the same windows and batches as ``RelocMetaArchBase.iter_windows`` over the whole video."""
    starts = window_starts(length, window, min(overlap, window - 1))
    n = min(window, length)
    clips = iter_subclips(path, fps, size, 0, length)
    buf: Dict[int, np.ndarray] = {}
    for b in range(0, len(starts), per_batch):
        batch = starts[b : b + per_batch]
        while len(buf) == 0 or max(buf) < batch[-1] + n - 1:
            clip = next(clips, None)
            if clip is None:
                raise VideoDecodeError(path, f"decoding ended after {max(buf, default=-1) + 1} of "
                                             f"{length} seconds")
            buf[clip.second] = clip.frames
        yield batch, [torch.from_numpy(np.stack([buf[t] for t in range(s, s + n)]))
                      for s in batch]
        keep_from = starts[b + per_batch] if b + per_batch < len(starts) else length
        for t in [t for t in buf if t < keep_from]:
            del buf[t]
    for _ in clips:  # let the decoder finish its checks of the span (late damage reports)
        pass


def check_lengths(query_seconds: int, reference: VideoInfo) -> None:
    """InputError unless the reference has at least as many whole seconds as the query."""
    if query_seconds > reference.num_seconds:
        raise InputError(f"the query ({query_seconds} s) is longer than the reference "
                         f"{reference.path} ({reference.num_seconds} whole seconds)")


@dataclass
class Relocalization:
    """The model's output contract for the reference, plus how it was obtained."""

    outputs: Dict[str, Any]
    reference: VideoInfo
    cache: str  # "hit", "miss" or "off"
    cache_key: str = ""
    messages: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)


def _numpy_chunk(chunk: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in chunk.items()}


def _torch_chunks(chunks: Iterator[Dict[str, np.ndarray]]) -> Iterator[Dict[str, torch.Tensor]]:
    for chunk in chunks:
        yield {k: torch.from_numpy(v) for k, v in chunk.items()}


def relocalize(model: RelocMetaArchBase, query: Dict[str, Any], reference: str, **kwargs
               ) -> Relocalization:
    """Re-localize ``query`` (prepare_query's inputs) in the video ``reference``, streamed.
    A ``query["descriptor"]`` (``model.query_descriptor`` of the same inputs) is used as is, so
    one query searched in several references computes its features once.

    Keywords: ``fps``, ``size``; ``cache`` (with ``cfg``, for the key) reuses or stores the
    reference's features; ``progress(n)`` is called with the number of reference seconds
    finished since the last call; ``log(message)`` with what happened to the cache (also kept in
    ``.messages``). A cache entry that fails while read is removed and the features are
    computed again; a cache that cannot be written is skipped: the cache never stops a run.
    """
    try:
        return _relocalize(model, query, reference, **kwargs)
    except CacheReadError as exc:
        if kwargs.get("log") is not None:
            kwargs["log"](f"{exc}; computing the features again")
        result = _relocalize(model, query, reference, **kwargs)
        result.messages.insert(0, f"{exc}; computing the features again")
        return result


def _open_cache(cache: FeatureCache, cfg, model, reference: str, length: int, timings):
    """(cache entry or None, writer or None, key, messages, status) for ``reference``."""
    t1 = time.perf_counter()
    key = cache.key(file_digest(reference), model_digest(cfg, model))
    known = len(cache.problems)
    entry, writer, messages = cache.lookup(key), None, []
    timings["cache_key"] = time.perf_counter() - t1
    if entry is not None:
        messages.append(f"reusing cached features for {reference} ({entry.path})")
    else:
        writer = cache.writer(key, {"reference": reference, "seconds": length,
                                    "architecture": type(model).__name__})
        if writer is not None:
            messages.append(f"computing features for {reference}; caching them in {cache.root}")
    messages[:0] = cache.problems[known:]
    return entry, writer, key, messages, "hit" if entry is not None else "miss"


def _cached(chunks: Iterator[Dict[str, torch.Tensor]], state: Dict[str, Any], batches: int,
            note: Callable[[str], None]) -> Iterator[Dict[str, torch.Tensor]]:
    """The chunks, each also appended to ``state["writer"]`` while caching is still worth it."""
    for chunk in chunks:
        writer = state["writer"]
        if writer is not None and not (writer.append(_numpy_chunk(chunk)) and writer.worth_it(
                batches / len(chunk["starts"]))):
            note(writer.problem)
            writer.abort()
            state["writer"] = None
        yield chunk


@torch.no_grad()
def _relocalize(model: RelocMetaArchBase, query: Dict[str, Any], reference: str, *, fps: int,
                size: Tuple[int, int], cache: Optional[FeatureCache] = None, cfg=None,
                progress: Optional[Callable[[int], None]] = None,
                log: Optional[Callable[[str], None]] = None) -> Relocalization:
    t0 = time.perf_counter()
    info = probe_video(reference)
    length = info.num_seconds
    if length < 1:
        raise InputError(f"reference video {reference} is shorter than one second")
    check_lengths(int(query["query_valid"].sum()), info)
    qdesc = query.get("descriptor")  # computed once by the caller for several references
    if qdesc is None:
        qdesc = model.query_descriptor(dict(query, pair_id="query"))
    timings = {"query_features": time.perf_counter() - t0}
    entry, writer, key, messages, status = None, None, "", [], "off"
    if cache is not None:
        entry, writer, key, messages, status = _open_cache(cache, cfg, model, reference, length,
                                                           timings)
    for m in messages if log is not None else ():
        log(m)

    def note(message: str) -> None:
        messages.append(message)
        if log is not None:
            log(message)

    if entry is not None:
        chunks: Iterator[Dict[str, torch.Tensor]] = _torch_chunks(entry.chunks())
    else:
        chunks = model.feature_chunks(stream_windows(
            reference, fps=fps, size=size, length=length, window=model.reference_seconds,
            overlap=model.window_overlap, per_batch=model.windows_per_batch))
    state = {"writer": writer}
    chunks = _cached(chunks, state, len(model.reference_starts(length)), note)
    results: List[Any] = []
    t2 = time.perf_counter()
    try:
        for _, result in model.relocalize_windows(qdesc, chunks, length, input_size=size,
                                                  file_size=(info.height, info.width)):
            results.append(result)
            if progress is not None:
                progress(1)
        if state["writer"] is not None and state["writer"].commit() is None:
            note(state["writer"].problem)
    finally:
        if state["writer"] is not None:
            state["writer"].abort()  # no-op after commit
    timings["reference"] = time.perf_counter() - t2
    outputs = model.outputs(results, torch.arange(length))
    return Relocalization(outputs, info, status, key, messages, timings)


# ----------------------------------------------------------------------------- pair files


def check_pair_task(data: Dict[str, Any], pair_file: str, model: RelocMetaArchBase, cfg) -> None:
    """InputError unless the pair file's task (``data``: its loaded content) is the model's."""
    task = data["task"]
    if task != model.task:
        raise InputError(f"{pair_file}: {task} pairs need a {task} model; "
                         f"{cfg.MODEL.META_ARCHITECTURE} is {model.task}")


def predict_pair_file(model: RelocMetaArchBase, cfg, pair_file: str, *,
                      cache: Optional[FeatureCache] = None,
                      progress: Optional[Callable[[int], None]] = None
                      ) -> Dict[str, List[Dict[str, Any]]]:
    """Prediction-file entries ``{pair_id: [...]}`` of every pair of ``pair_file`` by the path of
    ``relocnet relocalize``: each pair's query span and (spatio-temporal) query boxes through
    ``prepare_query``, its reference streamed by ``relocalize`` (the whole video; what falls
    outside the pair's reference span is dropped). The pair file's task decides the entries
    (segments or per-second boxes); ``progress(1)`` after each pair. A pair whose video cannot be
    read raises InputError naming the pair file and the pair."""
    from ..data.pairs import load_pairs, resolve_video
    from ..evaluation.predictions import entries_from_output

    data = load_pairs(pair_file)
    check_pair_task(data, pair_file, model, cfg)
    task = data["task"]
    v = cfg.INPUT.VIDEO
    size = (v.HEIGHT, v.WIDTH)
    out = {}
    for pair in data["pairs"]:
        q = pair["query"]
        try:
            query, _, _ = prepare_query(
                resolve_video(pair_file, q["video"]), fps=v.FPS, size=size,
                query_seconds=v.QUERY_SECONDS, min_seconds=v.MIN_QUERY_SECONDS, start=q["start"],
                end=q["end"], boxes=q["boxes"] if task == "spatio_temporal" else None)
            result = relocalize(model, query, resolve_video(pair_file, pair["reference"]["video"]),
                                fps=v.FPS, size=size, cache=cache, cfg=cfg)
        except (InputError, VideoDecodeError, OSError) as exc:
            raise InputError(f"{pair_file}: pair {pair['pair_id']}: {exc}") from exc
        s, e = pair["reference"]["start"], pair["reference"]["end"]  # the whole video is searched
        out[str(pair["pair_id"])] = [
            x for x in entries_from_output(result.outputs, task)
            if (x["segment"][1] > s and x["segment"][0] < e if task == "temporal"
                else s <= x["second"] < e)]
        if progress is not None:
            progress(1)
    return out
