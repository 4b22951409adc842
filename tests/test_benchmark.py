"""tools/benchmark.py: both subcommands on tiny shapes print a table and a final JSON line with
the expected keys; flop counting and the looped synthetic references."""
import json
import os
import sys

import pytest
import torch
from detectron2.config import get_cfg

from relocnet import add_relocnet_config
from relocnet.data.video import probe_video, read_subclips
from relocnet.engine.pipeline_benchmark import loop_video, reference_videos, synthetic_clip
from relocnet.modeling.correlation import useful_flops
from relocnet.utils.benchmark import format_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import benchmark as tool  # noqa: E402

torch.set_num_threads(1)


def run_tool(capsys, argv):
    assert tool.main(argv) == 0
    out = capsys.readouterr().out.rstrip("\n").splitlines()
    return out[:-1], json.loads(out[-1])  # the JSON line is last


def test_correlation_quick(capsys):
    table, result = run_tool(capsys, ["--threads", "1", "correlation", "--quick", "--repeat", "1"])
    assert any("GEMM GF/s" in line for line in table)
    assert any("spatial-correlation-sampler" in line for line in table)
    assert result["benchmark"] == "correlation"
    assert {"cpu", "cores", "torch", "threads", "load_avg_1min", "date"} <= set(result["machine"])
    assert len(result["cases"]) == 2 and {c["patch"] for c in result["cases"]} == {0, 1}
    for case in result["cases"]:
        assert case["useful_gflop"] == pytest.approx(
            useful_flops(case["P"] * case["D"], case["C"], case["H"], case["W"], case["window"],
                         case["patch"]) / 1e9)
        assert case["gemm_gflops"] > 0
        assert {"fast", "gram", "reference", "shifted_einsum"} <= set(case["impls"])
        for r in case["impls"].values():
            assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0
            assert r["max_rel_diff_vs_fast"] < 1e-4  # every alternative computes the same maps
            # achieved GFLOP/s is useful flops over time, and its share of the GEMM rate
            flops = case["useful_gflop"] * 1e9
            assert r["gflops_fwd"] == pytest.approx(flops / (r["fwd_ms"] / 1e3) / 1e9)
            assert r["gflops_fwd_bwd"] == pytest.approx(3 * flops / (r["fwd_bwd_ms"] / 1e3) / 1e9)
            assert r["gemm_fraction_fwd"] == pytest.approx(r["gflops_fwd"] / case["gemm_gflops"])
    assert set(result["summary"]) == {"gemm_fraction_fwd_min", "gemm_fraction_fwd_bwd_min",
                                      "speedup_vs_reference_fwd_min",
                                      "speedup_vs_reference_fwd_bwd_min"}
    assert {"gemm_fraction_met", "speedup_vs_reference_met"} <= set(result["targets"])
    scs = result["spatial_correlation_sampler"]
    assert scs["available"] or scs["reason"]


def test_flops_hand_case():
    # P = 2 proposals x D = 1 query, C = 4, 2 x 3 map, window 3, s = 0:
    # 2 pairs x 6 locations x 9 displacements x 4 channels x (multiply + add)
    assert useful_flops(2, 4, 2, 3, 3) == 2 * 6 * 9 * 4 * 2 == 864


def test_format_table():
    text = format_table([{"a": 1.23456, "b": "x"}, {"a": 12345.6, "b": None}], ["a", "b"])
    assert text.splitlines() == ["    a  b", "-----  -", " 1.23  x", "12346   "]


def test_looped_reference_is_decodable(tmp_path):
    clip = synthetic_clip(str(tmp_path / "c.mp4"), seconds=2, fps=8, size=(32, 48))
    looped = loop_video(clip, str(tmp_path / "l.mp4"), 3)
    info = probe_video(looped)
    assert info.num_seconds == 6 and (info.height, info.width) == (32, 48)
    a = read_subclips(clip, 8)
    b = read_subclips(looped, 8)
    assert b.shape[0] == 6
    for k in range(3):  # each loop shows the clip again, frame for frame
        assert (b[2 * k: 2 * k + 2] == a).all()
    with pytest.raises(ValueError, match="multiple"):
        reference_videos(str(tmp_path), [0.05, 0.08], fps=8, size=(32, 48))


def tiny_config(path):
    cfg = get_cfg()
    add_relocnet_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/synthreloc/Base-RelocNet-CPU.yaml"))
    cfg.MODEL.META_ARCHITECTURE = "RelocRCNN"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 8
    cfg.MODEL.RELOC.MICRO.WIDTH = 8
    cfg.MODEL.RELOC.MICRO.OUT_CHANNELS = 16
    cfg.MODEL.RELOC.MACRO.HIDDEN = 8
    cfg.MODEL.RELOC.HEAD.CHANNELS = 16
    cfg.INPUT.VIDEO.FPS = 3
    cfg.INPUT.VIDEO.HEIGHT, cfg.INPUT.VIDEO.WIDTH = 32, 48
    cfg.INPUT.VIDEO.QUERY_SECONDS = cfg.INPUT.VIDEO.REFERENCE_SECONDS = 2
    cfg.INPUT.VIDEO.WINDOW_OVERLAP = 1
    path.write_text(cfg.dump())
    return str(path)


def test_pipeline_tiny(capsys, tmp_path):
    argv = ["--threads", "1", "pipeline", "--config-file", tiny_config(tmp_path / "t.yaml"),
            "--synthetic-minutes", "0.05,0.1", "--cache-dir", str(tmp_path / "cache"),
            "--video-fps", "6", "--video-size", "48x64"]
    table, result = run_tool(capsys, argv)
    assert any("x_real_time" in line for line in table)
    assert result["benchmark"] == "pipeline" and result["architecture"] == "RelocRCNN"
    stages = result["stages"]
    assert set(stages) == {"decode", "features", "match", "match_cached", "end_to_end"}
    for name, r in stages.items():
        assert r["seconds"] == 3 and r["x_real_time"] == pytest.approx(3 / r["wall_s"])
    assert stages["match_cached"]["cache"] == "hit" and stages["end_to_end"]["cache"] == "off"
    # the cached rate leaves out the per-call costs (query features, cache key); end to end not
    cached, e2e = stages["match_cached"], stages["end_to_end"]
    assert cached["call_wall_s"] >= cached["wall_s"] and cached["fixed_s"] > 0
    assert e2e["call_wall_s"] == e2e["wall_s"]
    assert set(result["memory"]) == {"0.05", "0.1"}
    assert [r["seconds"] for r in result["memory"].values()] == [3, 6]
    for r in result["memory"].values():
        assert r["peak_rss_mib"] >= r["peak_rss_loaded_mib"] > 50
    assert {"end_to_end_met", "match_cached_met", "flat_memory_met"} <= set(result["targets"])
