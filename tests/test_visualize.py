"""tools/visualize_data.py on a tiny video and pair file written here: the PNG's size, the frame
of each second in its tile, boxes and GT borders in their colours, and the timeline."""
import importlib.util
import os

import cv2
import numpy as np
import pytest

from relocnet.data.datasets import register_reloc_pairs
from relocnet.data.pairs import save_pairs
from relocnet.data.video_writer import write_video
from relocnet.utils import visualize as vis

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAY = {t: 30 + 25 * t for t in range(8)}  # second t of the video is flat gray GRAY[t]


def _tool():
    spec = importlib.util.spec_from_file_location("visualize_data",
                                                  os.path.join(REPO, "tools", "visualize_data.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("vis")
    frames = [np.full((48, 64, 3), GRAY[i // 10], np.uint8) for i in range(80)]  # 8 s at 10 fps
    write_video(str(d / "videos" / "clip.mp4"), frames, fps=10)
    pair = {"pair_id": "p0", "label": "wave",
            "query": {"video": "../videos/clip.mp4", "start": 1, "end": 3,
                      "boxes": {1: [8, 8, 40, 40], 2: [10, 10, 42, 42]}},
            "reference": {"video": "../videos/clip.mp4", "start": 2, "end": 8},
            "segments": [[4, 6]], "boxes": {4: [[20, 10, 60, 40]], 5: [[20, 10, 60, 40]]}}
    path = str(d / "pairs" / "pairs.json")
    save_pairs(path, "spatio_temporal", [pair])
    return path


def _near(img, y, x, color, r=2):
    win = img[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].reshape(-1, 3)
    return bool((win == np.array(color, np.uint8)).all(axis=1).any())


def _has(region, color):
    return bool((region.reshape(-1, 3) == np.array(color, np.uint8)).all(axis=1).any())


def test_visualize_pair_png(pair_file, tmp_path, capsys):
    out = str(tmp_path / "pair.png")
    rc = _tool()(["--pairs", pair_file, "--pair-id", "p0", "--output", out, "--tile-height", "96"])
    assert rc == 0, capsys.readouterr().err
    img = cv2.cvtColor(cv2.imread(out), cv2.COLOR_BGR2RGB)
    # 6 columns of 128x96 tiles (64x48 video, scale 2); rows: query, reference, timeline
    assert img.shape == (22 + 2 * (18 + 96 + 14 + 4) + 36 + 4, 4 + 6 * (128 + 4), 3)
    lay = vis.layout(2, 6, tile_h=96, tile_w=128, columns=6)
    assert (lay.height, lay.width) == img.shape[:2]

    def tile(xy):
        x, y = xy
        return img[y:y + 96, x:x + 128]

    # each tile shows its own second's keyframe
    for t, xy in zip((1, 2), lay.query_tiles):
        assert abs(int(tile(xy)[88, 120, 0]) - GRAY[t]) <= 12
    for t, xy in zip(range(2, 8), lay.reference_tiles):
        assert abs(int(tile(xy)[50, 100, 0]) - GRAY[t]) <= 12 or t in (4, 5)
        assert abs(int(tile(xy)[90, 10, 0]) - GRAY[t]) <= 12
    # query box [8, 8, 40, 40] at scale 2 -> edges at 16 and 79 of the tile
    q1 = tile(lay.query_tiles[0])
    assert _near(q1, 16, 48, vis.QUERY_COLOR) and _near(q1, 79, 48, vis.QUERY_COLOR)
    assert _near(q1, 48, 16, vis.QUERY_COLOR) and _near(q1, 48, 79, vis.QUERY_COLOR)
    assert not _has(q1[24:72, 24:72], vis.QUERY_COLOR)  # inside the box: the frame
    q2 = tile(lay.query_tiles[1])
    assert _near(q2, 20, 52, vis.QUERY_COLOR) and not _near(q2, 16, 52, vis.QUERY_COLOR, r=0)
    # reference: GT box [20, 10, 60, 40] -> x 40..119, y 20..79, and a green border, at 4 and 5
    for t, xy in zip(range(2, 8), lay.reference_tiles):
        r = tile(xy)
        if t in (4, 5):
            assert _near(r, 20, 80, vis.GT_COLOR) and _near(r, 50, 40, vis.GT_COLOR)
            assert (r[0, 0] == vis.GT_COLOR).all() and (r[95, 127] == vis.GT_COLOR).all()
            assert not _has(r[28:72, 48:112], vis.GT_COLOR)
        else:
            assert not _has(r, vis.GT_COLOR) and not _has(r, vis.QUERY_COLOR)
    # timeline over [2, 8]: segment [4, 6] is green, the rest grey
    y = lay.timeline_y + 10
    bar = img[y, 4:lay.width - 4]
    green = np.flatnonzero((bar == np.array(vis.GT_COLOR)).all(axis=1))
    assert abs(green[0] - 787 * 2 / 6) <= 1 and abs(green[-1] - 787 * 4 / 6) <= 1
    assert (bar[100] == vis.TIMELINE_BG).all() and (bar[700] == vis.TIMELINE_BG).all()


def test_visualize_registered_dataset_and_errors(pair_file, tmp_path, capsys):
    register_reloc_pairs("tmp_vis_pairs", pair_file, task="spatio_temporal",
                         evaluator_type="relocnet_spatio_temporal")
    out = str(tmp_path / "d.png")
    assert _tool()(["--dataset", "tmp_vis_pairs", "--index", "0", "--output", out,
                    "--max-frames", "3", "--tile-height", "48"]) == 0
    img = cv2.imread(out)
    lay = vis.layout(2, 3, tile_h=48, tile_w=64, columns=6)
    assert img.shape[:2] == (lay.height, lay.width)
    assert vis.sample_seconds(2, 8, 3) == [2, 4, 7]
    assert _tool()(["--pairs", pair_file, "--pair-id", "nope", "--output", out]) == 1
    assert "no pair with pair_id 'nope'" in capsys.readouterr().err
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.remove("tmp_vis_pairs")
    MetadataCatalog.remove("tmp_vis_pairs")


def test_sampling_helpers():
    assert vis.span_seconds(2.3, 5.0) == [2, 3, 4]
    assert vis.sample_seconds(0, 100, 12)[0] == 0 and vis.sample_seconds(0, 100, 12)[-1] == 99
    assert len(vis.sample_seconds(0, 100, 12)) == 12
    assert vis.in_segments(4, [[4, 6]]) and not vis.in_segments(6, [[4, 6]])
    assert vis.in_segments(3, [[3.4, 3.6]]) and not vis.in_segments(3, [[3.6, 4]])
