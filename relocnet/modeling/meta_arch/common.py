"""What the two re-localization meta-architectures share: input format, normalization, windows,
query ROI features and the temporal outputs.

Input: a list of pairs, one dict each, as produced by ``relocnet.data.mapper.RelocPairMapper``:

- ``"pair_id"`` str, ``"task"`` str ("temporal" | "spatio_temporal");
- ``"query"``: uint8 Tensor (Tq, N, H, W, 3), RGB frames of the query seconds, already resized to
  INPUT.VIDEO.HEIGHT x WIDTH; ``"query_valid"``: BoolTensor (Tq,), False for the zero-padded
  seconds (§4.1 pads queries to QUERY_SECONDS; padding comes after the real seconds);
- ``"query_boxes"``: Tensor (Tq, D, 4), XYXY in input pixels, D >= 1 query objects
  (spatio-temporal only; boxes of padded seconds are ignored);
- ``"reference"``: uint8 Tensor (Tr, N, H, W, 3); ``"reference_seconds"``: LongTensor (Tr,),
  the absolute second of each reference second (consecutive);
- ``"match"``: Tensor (Tr,) float 0/1 per-second ground truth (training);
- ``"instances"``: list of Tr ``Instances(image_size=(H, W))`` with ``gt_boxes`` of the actors
  that match the query at that second (training, spatio-temporal);
- ``"actor_instances"`` (optional): the same with *all* actors; the RPN is trained on it when
  present (an RPN finds objects, not matches), else on ``"instances"``;
- ``"height"``, ``"width"``: size of the video file (outputs are rescaled to it);
  ``"input_size"``: (H, W).

Output (inference, one dict per pair; see the contracts): ``"second_scores"`` (Tr,),
``"seconds"`` (Tr,), ``"segments"`` (K, 2) absolute seconds, ``"segment_scores"`` (K,); the
spatio-temporal model adds ``"instances"`` (image_size = file size; pred_boxes, scores, seconds,
pred_classes = matched query object index).

Query pooling (MODEL.RELOC.QUERY_POOLING): the query ROI features of all valid query seconds are
combined into one (D, C, S, S) descriptor by a mean or a max over seconds, or (``"seconds"``,
temporal model only) kept as V query "objects" (V, C, S, S) of which the reference second's best
match counts (the query actor may move between seconds). The reference is
untrimmed, so query second i has no reason to line up with reference second i (the action may
start anywhere in a window), and every reference second is compared with the whole query; the
order of the query is not lost, because each second's features already contain the macro
ConvLSTM's temporal context. Queries longer than QUERY_SECONDS are cut into windows like
references (windows.py); a second's features are averaged over the windows covering it before
pooling, so the whole query is used.

Heads may add losses of their own (``RelocHead.extra_losses``: the SimilarityHead's auxiliary
classification of the query among the training classes).
"""
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.layers import move_device_like
from detectron2.modeling import Backbone
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from ..decoding import build_decoder
from ..windows import RunningMean, average_by_second, pad_seconds, window_starts

__all__ = ["RelocMetaArchBase", "WindowFeatures"]

# one backbone window: (pair index, first second of the window, {"res4", "features",
# "keyframes"} each with the window's seconds on dim 0)
WindowFeatures = Tuple[int, int, Dict[str, torch.Tensor]]


class RelocMetaArchBase(nn.Module):
    """Backbone, normalization, ROI pooling, windows and decoding shared by both models.

    Windowed inference (``inference_one``, ``relocnet relocalize``, the pipeline benchmark) is one
    generator, :meth:`relocalize_windows`, over "chunks": the query-independent (cacheable) output
    of :meth:`window_chunk` for one backbone batch of reference windows. Subclasses say how a chunk
    is scored against a query (``chunk_values``), what a second's merged values become
    (``second_result``) and how the seconds make the outputs (``outputs``).
    """

    task = ""  # the task a subclass solves: "temporal" | "spatio_temporal" (mappers, evaluators)
    keyframe_res4 = True  # whether the model reads the backbone's keyframe "res4" (the RPN does)

    def __init__(
        self,
        *,
        backbone: Backbone,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str,
        pooler_resolution: int,
        pooler_sampling_ratio: int,
        query_pooling: str,
        query_seconds: int,
        reference_seconds: int,
        window_overlap: int,
        decoder_name: str,
        decoder_threshold: float,
        decoder_top_k: int,
        windows_per_batch: int = 4,
        match_threshold: float = 0.5,
        decoder_outside_weight: float = 1.0,
    ):
        """
        Args:
            pixel_mean, pixel_std: per channel, in the channel order of ``input_format``
                (detectron2's convention).
            input_format: "RGB" or "BGR": the channel order the backbone expects; frames arrive
                RGB and are flipped for "BGR".
            query_pooling: "mean" or "max" over valid query seconds, or "seconds" (all kept).
            query_seconds, reference_seconds, window_overlap: window sizes and overlap (§4.1).
            decoder_*: MODEL.RELOC.DECODER (see decoding.py).
            windows_per_batch: windows per backbone call at inference (memory bound); training
                runs all windows of the batch in one call.
            match_threshold: the probability at which the best segment counts as found; a
                persistent buffer, so a calibrated value travels with the weights.
            decoder_outside_weight: spatio-temporal detections in seconds outside the top
                segment have their scores multiplied by this (``weigh_detections``).
        """
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR' for video frames, got {input_format!r}")
        if query_pooling not in ("mean", "max", "seconds"):
            raise ValueError(f"MODEL.RELOC.QUERY_POOLING must be 'mean', 'max' or 'seconds', got "
                             f"{query_pooling!r}")
        window_starts(reference_seconds, reference_seconds, window_overlap)  # validates the overlap
        self.backbone = backbone
        self.input_format = input_format
        shape = backbone.output_shape()["features"]
        self.pooler = ROIPooler(
            output_size=pooler_resolution,
            scales=(1.0 / shape.stride,),
            sampling_ratio=pooler_sampling_ratio,
            pooler_type="ROIAlignV2",  # ROIAlign(aligned=True)
        )
        self.query_pooling = query_pooling
        self.query_seconds = query_seconds
        self.reference_seconds = reference_seconds
        self.window_overlap = window_overlap
        self.decoder = build_decoder(decoder_name, threshold=decoder_threshold,
                                     top_k=decoder_top_k)
        if not 0.0 <= decoder_outside_weight <= 1.0:
            raise ValueError(f"MODEL.RELOC.DECODER.OUTSIDE_WEIGHT must be in [0, 1], got "
                             f"{decoder_outside_weight}")
        self.outside_weight = float(decoder_outside_weight)
        self.windows_per_batch = windows_per_batch
        self.register_buffer("match_threshold", torch.tensor(float(match_threshold)))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1, 1), False)
        if self.pixel_mean.shape != (3, 1, 1, 1) or self.pixel_std.shape != (3, 1, 1, 1):
            raise ValueError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD need 3 values each")

    @staticmethod
    def base_config(cfg, backbone: Backbone) -> Dict[str, Any]:
        """The constructor arguments of this class, from a config."""
        v, r = cfg.INPUT.VIDEO, cfg.MODEL.RELOC
        return dict(
            backbone=backbone,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            input_format=cfg.INPUT.FORMAT,
            pooler_resolution=r.POOLER_RESOLUTION,
            pooler_sampling_ratio=r.POOLER_SAMPLING_RATIO,
            query_pooling=r.QUERY_POOLING,
            query_seconds=v.QUERY_SECONDS,
            reference_seconds=v.REFERENCE_SECONDS,
            window_overlap=v.WINDOW_OVERLAP,
            decoder_name=r.DECODER.NAME,
            decoder_threshold=r.DECODER.THRESHOLD,
            decoder_top_k=r.DECODER.TOP_K,
            match_threshold=r.MATCH_THRESHOLD,
            decoder_outside_weight=r.DECODER.OUTSIDE_WEIGHT,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ backbone over windows
    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (T, N, H, W, 3) RGB -> float (T, 3, N, H, W), normalized, in INPUT.FORMAT order."""
        if frames.dim() != 5 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (T, N, H, W, 3), got shape {tuple(frames.shape)}")
        x = move_device_like(frames, self.pixel_mean).float()
        if self.input_format == "BGR":
            x = x.flip(-1)
        x = x.permute(0, 4, 1, 2, 3)
        return (x - self.pixel_mean) / self.pixel_std

    def iter_windows(self, clips: List[torch.Tensor], size: int) -> Iterator[List[WindowFeatures]]:
        """Backbone features of every ``size``-second window of every clip, in batches.

        Windows of the same length are stacked into one backbone call of up to
        ``windows_per_batch`` windows (all of them in training); yields one list of
        ``(clip index, window start, features)`` per backbone call, ordered by clip, then start.
        """
        jobs = [
            (i, s, min(size, clip.shape[0]))
            for i, clip in enumerate(clips)
            for s in window_starts(clip.shape[0], size, min(self.window_overlap, size - 1))
        ]
        limit = len(jobs) if self.training else self.windows_per_batch
        while jobs:
            same = [j for j in jobs if j[2] == jobs[0][2]]  # equal lengths stack
            batch, jobs = same[:limit], [j for j in jobs if j not in same[:limit]]
            feats = self.window_features([clips[i][s : s + n] for i, s, n in batch])
            yield [(i, s, f) for (i, s, _), f in zip(batch, feats)]

    def window_features(self, windows: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        """One backbone call over windows of equal length (uint8 (n, N, H, W, 3) each): per window
        ``{"res4" (if the model reads it), "features", "keyframes"}``, each with the window's n
        seconds on dim 0."""
        x = torch.stack([self.normalize(w) for w in windows])
        n = x.shape[1]
        out = dict(self.backbone(x, keyframe_res4=self.keyframe_res4))  # (B*T, C, h, w) each
        out["keyframes"] = x[:, :, :, x.shape[3] // 2].flatten(0, 1)  # (B*T, 3, H, W)
        return [{k: v[b * n : (b + 1) * n] for k, v in out.items()} for b in range(len(windows))]

    def second_descriptors(self, features: torch.Tensor) -> torch.Tensor:
        """One global descriptor per second: backbone ``"features"`` (n, C, h, w) ->
        (n, C), global-average-pooled and L2-normalized (the archive index's coarse stage)."""
        return F.normalize(features.float().mean(dim=(2, 3)), dim=1)

    # ------------------------------------------------------------------ query side (eq. 14)
    def query_rois(self, pairs: List[Dict[str, Any]], full_frame: bool) -> List[torch.Tensor]:
        """Eq. 14: one (D, C, S, S) query descriptor per pair, the ROIAlign of each valid second's
        features at the query boxes (the full frame when ``full_frame``), pooled over seconds."""
        clips, boxes, valids = [], [], []
        tq = max(int(p["query"].shape[0]) for p in pairs)
        for p in pairs:
            q = p["query"]
            valid = p.get("query_valid", torch.ones(q.shape[0], dtype=torch.bool))
            if not bool(valid.any()):
                raise ValueError(f"pair {p.get('pair_id')!r}: the query has no valid second")
            if full_frame:
                h, w = q.shape[2], q.shape[3]
                b = torch.tensor([[[0.0, 0.0, float(w), float(h)]]]).expand(q.shape[0], 1, 4)
            else:
                b = torch.as_tensor(p["query_boxes"], dtype=torch.float32)
            # pad to a common length so that the training batch is one backbone call
            clips.append(pad_seconds(q, tq))
            valids.append(pad_seconds(valid.bool(), tq))
            boxes.append(pad_seconds(b, tq).to(self.device))
        items: List[List[Tuple[int, torch.Tensor]]] = [[] for _ in pairs]
        for batch in self.iter_windows(clips, self.query_seconds):
            for i, s, feats in batch:
                n = feats["features"].shape[0]
                keep = valids[i][s : s + n].nonzero().flatten().tolist()
                if not keep:
                    continue
                rois = self.pooler(
                    [feats["features"][keep]], [Boxes(boxes[i][s + t]) for t in keep]
                )
                rois = rois.view(len(keep), -1, *rois.shape[1:])  # (V, D, C, S, S)
                items[i].extend((s + t, r) for t, r in zip(keep, rois))
        out = []
        for per_pair in items:
            seconds = torch.stack([x for x in average_by_second(per_pair, tq) if x is not None])
            if self.query_pooling == "seconds":  # every valid second kept: (V * D, C, S, S)
                out.append(seconds.flatten(0, 1))
            else:
                out.append(seconds.mean(0) if self.query_pooling == "mean" else seconds.amax(0))
        return out

    @staticmethod
    def require(pair: Dict[str, Any], key: str, length: int) -> Any:
        """``pair[key]``, which training needs with one entry per reference second."""
        if key not in pair or len(pair[key]) != length:
            got = len(pair[key]) if key in pair else "none"
            raise ValueError(
                f"pair {pair.get('pair_id')!r}: training needs {key!r} with one entry per "
                f"reference second ({length}); got {got}"
            )
        return pair[key]

    # ------------------------------------------------------------------ windowed inference
    def reference_starts(self, length: int) -> List[int]:
        """Start seconds of the reference windows of a ``length``-second reference."""
        k = self.reference_seconds
        return window_starts(length, k, min(self.window_overlap, k - 1))

    def window_batches(self, reference: torch.Tensor
                       ) -> Iterator[Tuple[List[int], List[torch.Tensor]]]:
        """(window starts, uint8 windows) per backbone call of an in-memory reference (T, N, H, W,
        3); ``engine.inference.stream_windows`` gives the same batches decoded from a file."""
        starts = self.reference_starts(reference.shape[0])
        n = min(self.reference_seconds, reference.shape[0])
        for b in range(0, len(starts), self.windows_per_batch):
            batch = starts[b : b + self.windows_per_batch]
            yield batch, [reference[s : s + n] for s in batch]

    def feature_chunks(self, batches: Iterable[Tuple[List[int], List[torch.Tensor]]]
                       ) -> Iterator[Dict[str, torch.Tensor]]:
        """:meth:`window_chunk` of each batch; seconds before ``covered`` were in an earlier one."""
        covered = 0
        for starts, windows in batches:
            yield self.window_chunk(starts, windows, covered)
            covered = starts[-1] + windows[-1].shape[0]

    def window_chunk(self, starts: List[int], windows: List[torch.Tensor], covered: int
                     ) -> Dict[str, torch.Tensor]:
        """The backbone over one batch of windows: ``{"starts": (B,), "features": (B, n, C, h,
        w)}``; it does not depend on the query, so it can be cached (engine/feature_cache.py)."""
        feats = self.window_features(windows)
        return {"starts": torch.as_tensor(starts, dtype=torch.long),
                "features": torch.stack([f["features"] for f in feats])}

    def chunk_values(self, chunk: Dict[str, torch.Tensor], query: torch.Tensor, input_size,
                     state: Dict[str, Any]) -> List[Tuple[int, torch.Tensor]]:
        """(reference second, value) for every second of every window of ``chunk``."""
        raise NotImplementedError

    def second_result(self, second: int, value: torch.Tensor, state: Dict[str, Any], *,
                      input_size, file_size) -> Any:
        """What one reference second's value, averaged over its windows, becomes."""
        raise NotImplementedError

    def outputs(self, results: List[Any], seconds: torch.Tensor) -> Dict[str, Any]:
        """The output contract from the ``second_result`` of every reference second."""
        raise NotImplementedError

    def relocalize_windows(self, query: torch.Tensor, chunks: Iterable[Dict[str, torch.Tensor]],
                           length: int, *, input_size, file_size) -> Iterator[Tuple[int, Any]]:
        """Windowed inference, streamed: for each chunk (in window order) the head's values per
        second, averaged over the windows that cover the second (windows.py), and ``(second,
        second_result)`` as soon as no later window covers it. Memory holds one chunk and the
        seconds still open, whatever ``length``."""
        all_starts = self.reference_starts(length)
        merged, state, index, done = RunningMean(), {}, 0, 0
        for chunk in chunks:
            starts = [int(s) for s in chunk["starts"]]
            if starts != all_starts[index : index + len(starts)]:
                raise RuntimeError(f"feature chunk {index} does not fit the windows of a "
                                   f"{length}-second reference")
            index += len(starts)
            for t, value in self.chunk_values(chunk, query, input_size, state):
                merged.add(t, value)
            done = all_starts[index] if index < len(all_starts) else length
            for t, value in merged.pop_before(done):
                yield t, self.second_result(t, value, state, input_size=input_size,
                                            file_size=file_size)
        if done != length:
            raise RuntimeError(f"features cover {done} of {length} seconds")

    @torch.no_grad()
    def inference_one(self, pair: Dict[str, Any]) -> Dict[str, Any]:
        """One pair's outputs: :meth:`relocalize_windows` over its in-memory reference."""
        reference = pair["reference"]
        size = tuple(reference.shape[2:4])
        file_size = (pair.get("height", size[0]), pair.get("width", size[1]))
        chunks = self.feature_chunks(self.window_batches(reference))
        results = self.relocalize_windows(self.query_descriptor(pair), chunks, reference.shape[0],
                                          input_size=size, file_size=file_size)
        return self.outputs([r for _, r in results], pair["reference_seconds"])

    # ------------------------------------------------------------------ outputs
    def temporal_outputs(
        self, second_scores: torch.Tensor, seconds: torch.Tensor,
        pair_scores: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The contract's temporal keys from per-second scores (CPU tensors): the decoded
        segments with their ranking scores and match probabilities (the best second's score
        inside each; ``AlignmentDecoder``'s scores are probabilities already), and ``"found"``:
        whether the top segment's probability reaches ``match_threshold``. ``pair_scores``: (T, V)
        probabilities of each (reference second, query second), for ``AlignmentDecoder``."""
        second_scores = second_scores.detach().float().cpu()
        seconds = torch.as_tensor(seconds, dtype=torch.long).cpu()
        if pair_scores is not None:
            pair_scores = pair_scores.detach().float().cpu()
        segments, segment_scores = self.decoder(second_scores, seconds, pair_scores)
        first = int(seconds[0]) if len(seconds) else 0
        probs = segment_scores.clone() if self.decoder.scores_are_probabilities else torch.stack(
            [second_scores[int(s) - first : int(e) - first].max() for s, e in segments.tolist()])
        threshold = float(self.match_threshold)
        return {
            "second_scores": second_scores,
            "seconds": seconds,
            "segments": segments,
            "segment_scores": segment_scores,
            "segment_probabilities": probs,
            "found": bool(probs[0] >= threshold),
            "match_threshold": threshold,
        }

    def detection_weights(self, segments: torch.Tensor, seconds: torch.Tensor) -> torch.Tensor:
        """(N,) factors of the scores of detections in ``seconds`` (N absolute seconds, any order
        or gaps): 1 inside the top segment (``segments[0]``, ``[start, end)`` in seconds),
        DECODER.OUTSIDE_WEIGHT elsewhere. The per-second detections then rank the seconds the
        decoder matched first, across pairs (a second whose actor resembles the query's but lies
        apart from the best segment is usually a false positive)."""
        seconds = torch.as_tensor(seconds, dtype=torch.long)
        start, end = segments[0].tolist()
        inside = (seconds >= start) & (seconds < end)
        return torch.where(inside, torch.tensor(1.0), torch.tensor(self.outside_weight))

    def weigh_detections(self, out: Dict[str, Any]) -> Dict[str, Any]:
        """``out["instances"].scores`` times ``detection_weights`` of their seconds (in place)."""
        inst = out["instances"]
        if self.outside_weight != 1.0 and len(inst):
            factors = self.detection_weights(out["segments"], inst.seconds)
            inst.scores = inst.scores * factors.to(inst.scores.dtype)
        return out
