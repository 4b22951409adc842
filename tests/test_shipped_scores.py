"""The shipped models keep their per-second scores (tests/data/shipped_scores.npz).

The reference was written by tools/reference_scores.py before the head/inference restructuring
(issue 10); every change to the models or to windowed inference must reproduce it within 1e-5,
both through ``model(...)`` and through the streamed ``relocalize``. Refresh it only for a change
that is meant to change the scores.
"""
import os

import numpy as np

from relocnet.model_zoo.scores import shipped_scores

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REFERENCE = os.path.join(DATA, "shipped_scores.npz")


def test_shipped_models_reproduce_their_reference_scores(tmp_path):
    expected = dict(np.load(REFERENCE))
    got = shipped_scores(str(tmp_path), os.path.join(DATA, "synthreloc_tiny"))
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].shape == value.shape, key
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-5, err_msg=key)
