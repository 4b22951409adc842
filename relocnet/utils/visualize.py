"""Drawing a query/reference pair: keyframe tiles with boxes, and a ground-truth timeline.

The figure (RGB uint8), top to bottom: a title strip; the query keyframes (one per query second,
query box in QUERY_COLOR); the reference keyframes (one per second, or an even sample), with
ground-truth boxes in GT_COLOR and a GT_COLOR border on seconds inside a ground-truth segment;
a timeline of the reference span with the ground-truth segments in GT_COLOR and a white tick
per drawn reference keyframe. Keyframe of second t = the frame shown at t + 0.5 (pairs.py).
"""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ["QUERY_COLOR", "GT_COLOR", "Layout", "layout", "span_seconds", "sample_seconds",
           "in_segments", "read_keyframes", "timeline", "pair_figure"]

QUERY_COLOR = (255, 255, 0)  # yellow
GT_COLOR = (0, 255, 0)  # green
BACKGROUND = (24, 24, 24)
TIMELINE_BG = (90, 90, 90)
PAD = 4  # pixels between tiles and around the figure
TITLE_H = 22  # title strip
LABEL_H = 18  # "query" / "reference" strips
CAPTION_H = 14  # "t=12" under each tile
TIMELINE_H = 36
BOX_THICKNESS = 2
BORDER = 3  # GT-second border, drawn over the tile's edge
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Layout:
    """Where everything goes: canvas size and each tile's top-left corner."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    query_tiles: List[Tuple[int, int]]  # (x, y) per query keyframe
    reference_tiles: List[Tuple[int, int]]
    timeline_y: int


def layout(n_query: int, n_reference: int, *, tile_h: int, tile_w: int, columns: int) -> Layout:
    """Tiles in rows of ``columns``; the width always fits ``columns`` tiles."""
    width = PAD + columns * (tile_w + PAD)
    cell_h = tile_h + CAPTION_H + PAD
    y = TITLE_H

    def block(n: int, y: int) -> Tuple[List[Tuple[int, int]], int]:
        y += LABEL_H
        tiles = [(PAD + (i % columns) * (tile_w + PAD), y + (i // columns) * cell_h)
                 for i in range(n)]
        return tiles, y + max(1, math.ceil(n / columns)) * cell_h

    q, y = block(n_query, y)
    r, y = block(n_reference, y)
    return Layout(y + TIMELINE_H + PAD, width, tile_h, tile_w, q, r, y)


def span_seconds(start: float, end: float) -> List[int]:
    """The whole seconds t whose sub-clip [t, t+1) overlaps [start, end)."""
    return list(range(int(math.floor(start)), max(int(math.floor(start)) + 1,
                                                  int(math.ceil(end)))))


def sample_seconds(start: float, end: float, max_count: int) -> List[int]:
    """span_seconds, or ``max_count`` of them evenly spaced (first and last included)."""
    secs = span_seconds(start, end)
    if len(secs) <= max_count:
        return secs
    idx = np.unique(np.round(np.linspace(0, len(secs) - 1, max_count)).astype(int))
    return [secs[i] for i in idx]


def in_segments(t: int, segments: Sequence[Sequence[float]]) -> bool:
    """True when second t's keyframe (t + 0.5) lies inside a segment [s, e)."""
    return any(s <= t + 0.5 < e for s, e in segments)


def read_keyframes(path: str, seconds: Sequence[int]) -> Dict[int, np.ndarray]:
    """{t: keyframe of second t} (RGB), decoded at 1 fps over each run of consecutive seconds.
    Seconds past the end of the video are left out."""
    from relocnet.data.video import iter_frames

    out: Dict[int, np.ndarray] = {}
    secs = sorted(set(seconds))
    runs: List[List[int]] = []
    for t in secs:
        if runs and runs[-1][-1] == t - 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    for run in runs:
        try:
            for time, frame in iter_frames(path, fps=1, start=run[0], end=run[-1] + 1):
                out[int(math.floor(time))] = frame
        except ValueError:  # the run starts past the end of the video
            continue
    return out


def _put_text(img: np.ndarray, text: str, x: int, y: int, color=(255, 255, 255)) -> None:
    cv2.putText(img, text, (x, y), _FONT, 0.38, color, 1, cv2.LINE_AA)


def _as_boxes(value: Any) -> List[Sequence[float]]:
    if value is None:
        return []
    return [b for b in value] if value and isinstance(value[0], (list, tuple)) else [value]


def _tile(canvas: np.ndarray, xy: Tuple[int, int], lay: Layout, frame: Optional[np.ndarray],
          boxes: Sequence[Sequence[float]], color: Tuple[int, int, int], caption: str,
          border: Optional[Tuple[int, int, int]] = None) -> None:
    """Letterbox ``frame`` into the tile at ``xy`` and draw ``boxes`` (pixels of the frame)."""
    x0, y0 = xy
    th, tw = lay.tile_h, lay.tile_w
    cell = canvas[y0:y0 + th, x0:x0 + tw]
    cell[:] = (0, 0, 0)
    if frame is not None:
        h, w = frame.shape[:2]
        s = min(tw / w, th / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        ox, oy = (tw - nw) // 2, (th - nh) // 2
        cell[oy:oy + nh, ox:ox + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        for b in boxes:
            p1 = (ox + round(b[0] * s), oy + round(b[1] * s))
            p2 = (ox + round(b[2] * s) - 1, oy + round(b[3] * s) - 1)
            cv2.rectangle(cell, p1, p2, color, BOX_THICKNESS)
    else:
        _put_text(cell, "no frame", 4, th // 2)
    if border is not None:
        cv2.rectangle(cell, (0, 0), (tw - 1, th - 1), border, BORDER)
    _put_text(canvas, caption, x0 + 2, y0 + th + CAPTION_H - 3)


def timeline(width: int, height: int, span: Tuple[float, float],
             segments: Sequence[Sequence[float]], marks: Sequence[float] = ()) -> np.ndarray:
    """A bar over ``span``: segments filled with GT_COLOR, a white tick at each mark time."""
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    lo, hi = span
    bar_top, bar_bot = 4, height - 14
    x_of = (lambda t: int(round((t - lo) / (hi - lo) * (width - 1)))) if hi > lo else (lambda t: 0)
    img[bar_top:bar_bot] = TIMELINE_BG
    for s, e in segments:
        img[bar_top:bar_bot, x_of(max(s, lo)):x_of(min(e, hi)) + 1] = GT_COLOR
    for t in marks:
        img[bar_bot:bar_bot + 3, x_of(t)] = (255, 255, 255)
    _put_text(img, f"{lo:g}s", 0, height - 2)
    label = f"{hi:g}s"
    _put_text(img, label, width - 7 * len(label), height - 2)
    return img


def pair_figure(pair: Dict[str, Any], query_frames: Dict[int, np.ndarray],
                reference_frames: Dict[int, np.ndarray], *, query_seconds: Sequence[int],
                reference_seconds: Sequence[int], tile_h: int = 120,
                columns: int = 6) -> Tuple[np.ndarray, Layout]:
    """Draw a validated pair (pairs.py format, int box keys) with its decoded keyframes."""
    some = next(iter(reference_frames.values()), next(iter(query_frames.values()), None))
    aspect = some.shape[1] / some.shape[0] if some is not None else 4 / 3
    lay = layout(len(query_seconds), len(reference_seconds), tile_h=tile_h,
                 tile_w=max(8, round(tile_h * aspect)), columns=columns)
    canvas = np.full((lay.height, lay.width, 3), BACKGROUND, np.uint8)
    q, r = pair["query"], pair["reference"]
    _put_text(canvas, f"{pair['pair_id']}  label {pair.get('label', '')}", PAD, 15)
    first_q = lay.query_tiles[0][1] if lay.query_tiles else TITLE_H + LABEL_H
    _put_text(canvas, f"query [{q['start']:g}, {q['end']:g}] s", PAD, first_q - 5, QUERY_COLOR)
    qboxes = q.get("boxes", {})
    for t, xy in zip(query_seconds, lay.query_tiles):
        _tile(canvas, xy, lay, query_frames.get(t), _as_boxes(qboxes.get(t)), QUERY_COLOR,
              f"t={t}")
    first_r = lay.reference_tiles[0][1] if lay.reference_tiles else first_q
    _put_text(canvas, f"reference [{r['start']:g}, {r['end']:g}] s, ground truth in green",
              PAD, first_r - 5, GT_COLOR)
    segs, gt = pair.get("segments", []), pair.get("boxes", {})
    for t, xy in zip(reference_seconds, lay.reference_tiles):
        inside = in_segments(t, segs)
        _tile(canvas, xy, lay, reference_frames.get(t), gt.get(t, []), GT_COLOR, f"t={t}",
              border=GT_COLOR if inside else None)
    bar = timeline(lay.width - 2 * PAD, TIMELINE_H, (r["start"], r["end"]), segs,
                   [t + 0.5 for t in reference_seconds])
    canvas[lay.timeline_y:lay.timeline_y + TIMELINE_H, PAD:lay.width - PAD] = bar
    return canvas, lay
