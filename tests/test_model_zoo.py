"""Shipped configs and weights: found from a checkout and packaged into a (non-editable) wheel."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from relocnet.model_zoo import MODELS, default_model, get_config_file, get_weights


def test_configs_resolve_from_the_checkout():
    for m in MODELS.values():
        path = get_config_file(m["config"])
        assert os.path.isfile(path) and path.endswith(m["config"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        get_config_file("synthreloc/nope.yaml")
    with pytest.raises(FileNotFoundError, match="not in"):
        get_weights("nope.pth")
    assert default_model("temporal")["config_file"].endswith(MODELS["temporal"]["config"])


def test_wheel_contains_configs_and_weights(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # build from a copy of the files git would commit (no stale build/ of the checkout)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo,
                           check=True, capture_output=True, text=True).stdout.split()
    src = tmp_path / "src"
    for f in files:
        if os.path.isfile(os.path.join(repo, f)):
            os.makedirs(src / os.path.dirname(f), exist_ok=True)
            shutil.copy2(os.path.join(repo, f), src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(src)], check=True, cwd=tmp_path)
    (wheel,) = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    names = set(zipfile.ZipFile(tmp_path / wheel).namelist())
    for m in MODELS.values():
        assert f"relocnet/model_zoo/configs/{m['config']}" in names
        shipped = os.path.join(repo, "relocnet", "model_zoo", "weights", m["weights"])
        assert (f"relocnet/model_zoo/weights/{m['weights']}" in names) == os.path.isfile(shipped)
    assert "relocnet/model_zoo/configs/Base-RelocNet.yaml" in names


@pytest.mark.parametrize("mode", sorted(MODELS))
def test_shipped_weights_fit_their_config(mode):
    from argparse import Namespace

    from relocnet.engine.inference import load_model
    from relocnet.engine.setup import setup_cfg

    default = default_model(mode)
    assert default["weights"], f"no shipped weights for {mode}"
    cfg = setup_cfg(Namespace(config_file=default["config_file"], opts=[]), log=False)
    model = load_model(cfg, default["weights"])  # raises WeightsError on any misfit
    assert not model.training


def test_main_job_relocalizes_a_synthreloc_pair_with_the_shipped_model(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(repo, "tools", "demo.py"), "--output",
                          str(tmp_path / "demo")], cwd=repo, capture_output=True, text=True,
                         env=dict(os.environ, RELOCNET_CACHE=str(tmp_path / "cache")))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    report = [line for line in lines if line.startswith("report: ")][-1].split()[1]
    assert os.path.isfile(os.path.join(repo, report) if not os.path.isabs(report) else report)
    import json

    with open(tmp_path / "demo" / "relocalize" / "results.json") as f:
        results = json.load(f)
    assert results["weights"] == default_model("temporal")["weights"]
    assert not results["random_weights"] and results["segments"]
    assert os.path.isfile(tmp_path / "demo" / "pair.png")
    truths = [line for line in lines if line.startswith("ground truth")]
    assert len(truths) == 2 and all("tIoU" in line and "match probability" in line
                                    for line in truths)
    # the real-footage copy (a cropped, rotated copy of bikes.mp4 [4, 7) s) is found exactly
    assert truths[0].startswith("ground truth [[4.0, 7.0]]; top-1 4-7 s, tIoU 1.00")
    assert truths[0].endswith(")") and ": found (" in truths[0]
    with open(tmp_path / "demo" / "copy" / "results.json") as f:
        assert json.load(f)["found"] is True
