"""What `relocnet relocalize` writes: results.json content, timeline.png, annotated keyframes and
segment clips (Detectron2's Visualizer), and report.html tying them together.

The report is a folder that opens offline: report.html links its images and clips by relative
paths (no CDN, no script), so the folder can be moved or zipped whole.
"""
import html
import math
import os
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.utils.visualizer import Visualizer
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..data.video import VideoInfo, iter_frames
from ..data.video_writer import write_video
from ..modeling.decoding import DECODER_REGISTRY
from .visualize import QUERY_COLOR, read_keyframes, sample_seconds

__all__ = ["detections_by_second", "segment_list", "draw_timeline", "annotate_frame",
           "annotation_layer", "composite", "write_keyframes", "write_segment_clips", "write_html"]

KEYFRAMES_PER_SEGMENT = 6
KEYFRAME_MAX_WIDTH = 960
CLIP_MAX_WIDTH = 480
CLIP_MAX_FPS = 12
CLIP_MAX_SECONDS = 10  # a longer segment gets a clip of its first CLIP_MAX_SECONDS
MAX_BOXES_DRAWN = 3  # per second, the best ones (results.json has all of them)
QUERY_THUMBS = 8
Detection = Dict[str, Any]  # {"second", "box" (file pixels), "score", "query_object"}


def detections_by_second(outputs: Dict[str, Any]) -> Dict[int, List[Detection]]:
    """The spatio-temporal model's Instances as {second: [detection, ...]} (empty if temporal)."""
    out: Dict[int, List[Detection]] = defaultdict(list)
    inst = outputs.get("instances")
    if inst is None:
        return out
    for box, score, d, t in zip(inst.pred_boxes.tensor.tolist(), inst.scores.tolist(),
                                inst.pred_classes.tolist(), inst.seconds.tolist()):
        out[int(t)].append({"second": int(t), "box": [round(v, 2) for v in box],
                            "score": float(score), "query_object": int(d)})
    return out


def segment_list(outputs: Dict[str, Any]) -> List[Dict[str, float]]:
    """Ranked segments [{"rank", "start", "end", "score", "probability"}] from the model's
    outputs (score: the decoder's ranking score; probability: the segment's match probability)."""
    return [{"rank": k + 1, "start": float(s), "end": float(e), "score": float(v),
             "probability": float(p)}
            for k, ((s, e), v, p) in enumerate(zip(outputs["segments"].tolist(),
                                                   outputs["segment_scores"].tolist(),
                                                   outputs["segment_probabilities"].tolist()))]


# ----------------------------------------------------------------------------- timeline


def _thumbnail_strip(frames: List[np.ndarray], boxes: List[List[List[float]]],
                     height: int = 96) -> np.ndarray:
    """Query keyframes side by side, query boxes drawn in QUERY_COLOR."""
    tiles = []
    for frame, bxs in zip(frames, boxes):
        s = height / frame.shape[0]
        tile = cv2.resize(frame, (max(1, round(frame.shape[1] * s)), height),
                          interpolation=cv2.INTER_AREA)
        for b in bxs:
            p1, p2 = (round(b[0] * s), round(b[1] * s)), (round(b[2] * s) - 1, round(b[3] * s) - 1)
            cv2.rectangle(tile, p1, p2, QUERY_COLOR, 2)
        tiles += [tile, np.zeros((height, 4, 3), np.uint8)]
    return np.concatenate(tiles[:-1], axis=1) if tiles else np.zeros((height, 1, 3), np.uint8)


def draw_timeline(path: str, scores: Sequence[float], segments: List[Dict[str, float]], *,
                  threshold: float, query_frames: List[np.ndarray],
                  query_boxes: List[List[List[float]]], title: str) -> None:
    """Per-second score curve, threshold line, shaded segments, query keyframes on top (PNG)."""
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 2.2], hspace=0.3)
    top = fig.add_subplot(grid[0])
    top.imshow(_thumbnail_strip(query_frames, query_boxes))
    top.set_axis_off()
    top.set_title(title, fontsize=10)
    ax = fig.add_subplot(grid[1])
    t = np.arange(len(scores))
    ax.step(np.append(t, len(scores)), np.append(scores, scores[-1] if len(scores) else 0),
            where="post", color="tab:blue", lw=1.5, label="score per second")
    ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
    for seg in segments:
        ax.axvspan(seg["start"], seg["end"], color="tab:orange", alpha=0.3)
        ax.text((seg["start"] + seg["end"]) / 2, 1.02, f"#{seg['rank']}", ha="center",
                va="bottom", fontsize=9, transform=ax.get_xaxis_transform())
    ax.set_xlim(0, max(1, len(scores)))
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("reference time (s)")
    ax.set_ylabel("match score")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path)


# ----------------------------------------------------------------------------- annotated frames


def _scale_to_width(frame: np.ndarray, max_width: int) -> Tuple[np.ndarray, float]:
    s = min(1.0, max_width / frame.shape[1])
    if s == 1.0:
        return frame, 1.0
    size = (max(1, round(frame.shape[1] * s)), max(1, round(frame.shape[0] * s)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), s


def annotate_frame(frame: np.ndarray, detections: List[Detection], text: str,
                   scale: float = 1.0) -> np.ndarray:
    """RGB frame with the best MAX_BOXES_DRAWN detection boxes (file pixels, times ``scale``)
    labelled by query object and score, and ``text`` at the top left."""
    vis = Visualizer(frame, metadata=None, scale=1.0)
    detections = sorted(detections, key=lambda d: -d["score"])[:MAX_BOXES_DRAWN]
    if detections:
        boxes = np.array([[v * scale for v in d["box"]] for d in detections])
        labels = [f"obj{d['query_object']} {d['score']:.2f}" for d in detections]
        vis.overlay_instances(boxes=boxes, labels=labels,
                              assigned_colors=[np.array(QUERY_COLOR) / 255.0] * len(detections))
    font = max(8, frame.shape[0] // 18)
    vis.draw_text(text, (4, 2), font_size=font, color="w", horizontal_alignment="left")
    return vis.output.get_image()


def annotation_layer(size: Tuple[int, int], detections: List[Detection], text: str,
                     scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """annotate_frame's drawing as an alpha layer ``(premultiplied colour, 1 - alpha)``, found by
    drawing on black and on white: on black the result is alpha * colour, on white it adds
    (1 - alpha) * 255."""
    black = annotate_frame(np.zeros(size + (3,), np.uint8), detections, text, scale)
    white = annotate_frame(np.full(size + (3,), 255, np.uint8), detections, text, scale)
    black = black.astype(np.float32)
    return black, (white.astype(np.float32) - black) / 255.0


def composite(frame: np.ndarray, layer: Tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``frame`` under an annotation_layer: colour + (1 - alpha) * frame."""
    color, transparency = layer
    return np.clip(color + transparency * frame + 0.5, 0, 255).astype(np.uint8)


def write_keyframes(out_dir: str, reference: str, segments: List[Dict[str, float]],
                    scores: Sequence[float], dets: Dict[int, List[Detection]]
                    ) -> Dict[int, List[str]]:
    """keyframes/seg{k}_{t}.jpg for up to KEYFRAMES_PER_SEGMENT seconds t of each segment k;
    returns {k: [relative paths]}."""
    os.makedirs(os.path.join(out_dir, "keyframes"), exist_ok=True)
    out: Dict[int, List[str]] = {}
    for seg in segments:
        secs = [t for t in sample_seconds(seg["start"], seg["end"], KEYFRAMES_PER_SEGMENT)
                if t < len(scores)]
        frames = read_keyframes(reference, secs)
        out[seg["rank"]] = []
        for t in secs:
            if t not in frames:
                continue
            frame, s = _scale_to_width(frames[t], KEYFRAME_MAX_WIDTH)
            img = annotate_frame(frame, dets.get(t, []), f"t={t}s  score {scores[t]:.2f}", s)
            rel = f"keyframes/seg{seg['rank']}_{t}.jpg"
            if not cv2.imwrite(os.path.join(out_dir, rel), img[:, :, ::-1]):
                raise OSError(f"cannot write {os.path.join(out_dir, rel)}")
            out[seg["rank"]].append(rel)
    return out


def write_segment_clips(out_dir: str, reference: VideoInfo, segments: List[Dict[str, float]],
                        scores: Sequence[float], dets: Dict[int, List[Detection]]
                        ) -> Dict[int, str]:
    """segments/seg{k}.mp4: each segment (its first CLIP_MAX_SECONDS), annotated; {k: path}.

    Detections change once per second, so Visualizer draws each second's annotation once, as an
    alpha layer (annotation_layer), which is composited onto every frame of the second."""
    os.makedirs(os.path.join(out_dir, "segments"), exist_ok=True)
    fps = max(1, min(CLIP_MAX_FPS, round(reference.fps)))
    s = min(1.0, CLIP_MAX_WIDTH / reference.width)
    w = max(2, 2 * round(reference.width * s / 2))
    h = max(2, 2 * round(reference.height * s / 2))
    out: Dict[int, str] = {}
    for seg in segments:
        start, end = seg["start"], min(seg["end"], seg["start"] + CLIP_MAX_SECONDS,
                                       reference.duration)
        if end <= start:
            continue

        def frames(start=start, end=end, rank=seg["rank"]):
            second, layer = None, None
            for time, frame in iter_frames(reference.path, fps, (h, w), start, end):
                t = min(int(math.floor(time)), len(scores) - 1)
                if t != second:
                    second = t
                    layer = annotation_layer((h, w), dets.get(t, []),
                                             f"#{rank}  t={t}s  score {scores[t]:.2f}",
                                             w / reference.width)
                yield composite(frame, layer)

        rel = f"segments/seg{seg['rank']}.mp4"
        write_video(os.path.join(out_dir, rel), frames(), fps)
        out[seg["rank"]] = rel
    return out


# ----------------------------------------------------------------------------- html

_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1300px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
.frames img{height:160px;margin:2px}.warn{color:#b00;font-weight:bold}
video{max-width:480px;display:block;margin:4px 0}code{background:#f3f3f3}"""


def write_html(path: str, results: Dict[str, Any], keyframes: Dict[int, List[str]],
               clips: Dict[int, str]) -> None:
    """report.html: summary, timeline, ranked segments with keyframes and clips."""
    e = html.escape
    q, r = results["query"], results["reference"]
    rows = "".join(f"<tr><td>{s['rank']}</td><td>{s['start']:g}</td><td>{s['end']:g}</td>"
                   f"<td>{s['probability']:.3f}</td><td>{s['score']:.3f}</td></tr>"
                   for s in results["segments"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>relocnet: "
             f"{e(os.path.basename(q['video']))} in {e(os.path.basename(r['video']))}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>relocnet re-localization ({e(results['mode'].replace('_', '-'))})</h1>"]
    if results.get("random_weights"):
        parts.append("<p class='warn'>Untrained model (random weights): these results mean "
                     "nothing.</p>")
    parts.append(
        f"<p>Query <code>{e(q['video'])}</code> [{q['start']:g}, {q['end']:g}) s"
        + (f", {len(next(iter(q['boxes'].values())))} object(s)" if q.get("boxes") else "")
        + f"<br>Reference <code>{e(r['video'])}</code>: {r['duration']:.1f} s, {r['width']}x"
        f"{r['height']}, {r['fps']:.2f} fps, {e(r['codec'])}<br>Config <code>"
        f"{e(results['config'])}</code>, weights <code>{e(str(results['weights']))}</code>, "
        f"features {e(results['cache']['status'])} in cache; "
        f"{results['timings'].get('total', 0):.1f} s in all</p>")
    verdict = "found" if results["found"] else "not found"
    parts.append(f"<p class='decision'><b>Decision: {verdict}</b>: the top segment's match "
                 f"probability {results['segments'][0]['probability']:.3f} "
                 f"{'reaches' if results['found'] else 'is below'} the model's threshold "
                 f"{results['match_threshold']:.3f} (calibrated on validation data when the "
                 f"weights carry one).</p>")
    parts.append("<img src='timeline.png' alt='score per second' style='max-width:100%'>")
    dec = results["model"]["decoder"]
    meaning = DECODER_REGISTRY.get(dec["name"]).ranking if dec["name"] in DECODER_REGISTRY else ""
    parts.append(f"<h2>Matched segments</h2><table><tr><th>rank</th><th>start (s)</th>"
                 f"<th>end (s)</th><th>match probability</th><th>ranking score</th></tr>{rows}"
                 f"</table><p>A segment's match probability is its best second's. Decoder "
                 f"<code>{e(dec['name'])}</code>, threshold {dec['threshold']:g}: a segment's "
                 f"ranking score is {meaning}.</p>")
    for seg in results["segments"]:
        k = seg["rank"]
        parts.append(f"<h3>#{k}: {seg['start']:g}–{seg['end']:g} s, match probability "
                     f"{seg['probability']:.3f}</h3>")
        imgs = "".join(f"<a href='{e(p)}'><img src='{e(p)}' alt='{e(p)}'></a>"
                       for p in keyframes.get(k, []))
        parts.append(f"<div class='frames'>{imgs}</div>")
        if k in clips:
            parts.append(f"<video controls preload='metadata' src='{e(clips[k])}'></video>"
                         f"<a href='{e(clips[k])}'>{e(clips[k])}</a>")
    parts.append("<p>Every second's score (and, spatio-temporal, every box) is in "
                 "<a href='results.json'>results.json</a>.</p></body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
