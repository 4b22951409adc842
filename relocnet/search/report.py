"""report.html of `relocnet search`: one row per hit, with keyframes, where the hit lies in its
video, and a clip of it (the keyframe and clip writers of relocnet/utils/report.py)."""
import html
import os
from typing import Any, Dict, List

from ..data.video import probe_video
from ..utils.report import write_keyframes, write_segment_clips

__all__ = ["write_hit_media", "write_search_html"]

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}img{height:72px;margin:1px}
.bar{position:relative;width:220px;height:12px;background:#ddd}
.bar div{position:absolute;top:0;height:12px;background:#c22}code{background:#f3f3f3}"""


def write_hit_media(out_dir: str, hits: List[Dict[str, Any]]) -> None:
    """keyframes/seg{rank}_*.jpg and segments/seg{rank}.mp4 of each hit; paths go into the hit
    (``"keyframes"``, ``"clip"``)."""
    for hit in hits:
        info = probe_video(hit["video"])
        scores = [0.0] * info.num_seconds
        for t, s in zip(hit["seconds"], hit["second_scores"]):
            if t < len(scores):
                scores[t] = s
        seg = {"rank": hit["rank"], "start": hit["start"], "end": hit["end"], "score": hit["score"]}
        hit["keyframes"] = write_keyframes(out_dir, hit["video"], [seg], scores, {}).get(
            hit["rank"], [])
        hit["clip"] = write_segment_clips(out_dir, info, [seg], scores, {}).get(hit["rank"])
        hit["duration"] = info.duration


def _row(hit: Dict[str, Any]) -> str:
    e = html.escape
    d = max(hit.get("duration", 0.0), 1e-6)
    left, width = 100 * hit["start"] / d, max(0.5, 100 * (hit["end"] - hit["start"]) / d)
    imgs = "".join(f"<a href='{e(p)}'><img src='{e(p)}' alt='{e(p)}'></a>"
                   for p in hit.get("keyframes", []))
    clip = f"<a href='{e(hit['clip'])}'>clip</a>" if hit.get("clip") else ""
    found = {True: "yes", False: "no", None: "-"}[hit["found"]]
    return (f"<tr><td>{hit['rank']}</td><td><code>{e(hit['video'])}</code></td>"
            f"<td>{hit['start']:g}</td><td>{hit['end']:g}</td><td>{hit['score']:.3f}</td>"
            f"<td>{found}</td><td>{hit['coarse_score']:.3f}</td><td>{imgs}</td>"
            f"<td><div class='bar' title='{hit['start']:g}-{hit['end']:g} s of {d:.0f} s'>"
            f"<div style='left:{left:.2f}%;width:{width:.2f}%'></div></div></td>"
            f"<td>{clip}</td></tr>")


def write_search_html(path: str, results: Dict[str, Any]) -> None:
    """report.html for results.json's content (hits with media paths)."""
    e = html.escape
    q = results["query"]
    head = ("<tr><th>rank</th><th>video</th><th>start (s)</th><th>end (s)</th><th>score</th>"
            "<th>found</th><th>coarse</th><th>keyframes</th><th>timeline</th><th>clip</th></tr>")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>relocnet search: "
             f"{e(os.path.basename(q['video']))}</title><style>{_CSS}</style></head><body>",
             "<h1>relocnet archive search</h1>",
             f"<p>Query <code>{e(q['video'])}</code> [{q['start']:g}, {q['end']:g}) s; index "
             f"<code>{e(results['index']['path'])}</code>: {results['index']['videos']} videos, "
             f"{results['index']['hours']:.2f} h; {results['timings'].get('total', 0):.1f} s "
             "in all.</p>",
             f"<table>{head}{''.join(_row(h) for h in results['hits'])}</table>",
             "<p>score: the fine stage's mean match probability over the hit's seconds; found: "
             "score >= the model's match threshold; coarse: the mean best cosine similarity of "
             "the query seconds (temporal voting). Every number is in "
             "<a href='results.json'>results.json</a>.</p></body></html>"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
