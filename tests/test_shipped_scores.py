"""The shipped models keep their per-second scores (tests/data/shipped_scores.npz).

The reference was written by tools/reference_scores.py before the head/inference restructuring
(issue 10); every change to the models or to windowed inference must reproduce it within 1e-5,
both through ``model(...)`` and through the streamed ``relocalize``. Refresh it only for a change
that is meant to change the scores. The scores are computed by the tool in a subprocess: it
starts OpenCV's and torch's thread pools, which later forking tests must not inherit.
"""
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data")
REFERENCE = os.path.join(DATA, "shipped_scores.npz")


def test_shipped_models_reproduce_their_reference_scores(tmp_path):
    out = tmp_path / "scores.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    run = subprocess.run([sys.executable, os.path.join(REPO, "tools", "reference_scores.py"),
                          "--output", str(out), "--workdir", str(tmp_path),
                          "--synthreloc", os.path.join(DATA, "synthreloc_tiny"),
                          "--copy", os.path.join(DATA, "copy_bikes_crop_rotate.mp4")],
                         cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    expected, got = dict(np.load(REFERENCE)), dict(np.load(out))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-5, err_msg=key)
