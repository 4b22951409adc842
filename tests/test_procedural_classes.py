"""SynthReloc procedural train classes: count, determinism, twins, distance to the held-out
classes, joint ranges, instance handling, and held-out splits that never show them."""
import math

import numpy as np

from relocnet.data.synthetic import actions as A
from relocnet.data.synthetic import library_procedural as LP
from relocnet.data.synthetic.plan import PRESETS, _pool, plan_split
from relocnet.data.synthetic.procedural import RANGES

PROC = A.classes("train", procedural=True)


def test_registered_classes():
    assert len(PROC) == LP.N_CLASSES == LP.STATS["accepted"]
    assert [a.name for a in PROC] == [f"proc_{i:03d}" for i in range(LP.N_CLASSES)]
    assert all(a.split == "train" and a.family.startswith("procedural/") and a.description
               and not a.translates for a in PROC)
    assert len(A.classes("train", procedural=False)) == 16
    assert len(A.classes("train")) == 16 + LP.N_CLASSES
    assert not A.classes("val", procedural=True) and not A.classes("test", procedural=True)
    twins = [a for a in PROC if a.twin]
    assert 0.15 <= len(twins) / len(PROC) <= 0.25
    assert {a.twin_kind for a in twins} == {"velocity_profile", "order", "direction", "speed"}
    assert LP.STATS["heldout"] > 0  # the grammar does reach near the held-out classes


def test_deterministic():
    accepted, stats = LP.generate()
    assert [text for _, text, _, _ in accepted] == [a.description for a in PROC]
    assert stats == {k: v for k, v in LP.STATS.items() if k != "accepted"}
    cyc = accepted[7][0]
    t = np.linspace(0, 3, 50)
    np.testing.assert_allclose(cyc.poses(t), _poses("proc_007", t), atol=1e-12)


def _poses(name, ts, inst=A.Instance()):
    return np.stack([A.pose_at(name, t, inst) for t in ts])


def test_twins_share_poses():
    grid = np.arange(0, 3.0, 1 / 160)
    pairs = {tuple(sorted((a.name, a.twin))) for a in PROC if a.twin}
    for a, b in sorted(pairs):
        Pa, Pb = _poses(a, grid), _poses(b, grid)
        d = np.abs(np.angle(np.exp(1j * (Pa[:, None, A.JOINTS] - Pb[None, :, A.JOINTS])))).max(-1)
        d = np.maximum(d, np.abs(Pa[:, None, A.LIFT] - Pb[None, :, A.LIFT]))
        assert d.min(1).max() < 0.05 and d.min(0).max() < 0.05, (a, b)
        # twins never mirror
        assert np.allclose(A.pose_at(a, 0.7, A.Instance(side=-1)), A.pose_at(a, 0.7, A.Instance()))


def test_far_from_heldout_classes():
    held = LP._heldout()
    for a in PROC:  # through the registered functions (speed 1, amp 1, phase 0)
        cyc = LP.CYCLES[a.name]
        v = LP._views(lambda t, n=a.name: _poses(n, t), cyc.period)
        assert LP.distance(v, held).min() >= LP.THRESHOLD, a.name


def test_poses_finite_and_in_range():
    rng = np.random.default_rng(0)
    lo = np.array([RANGES.get(j, (-np.inf, np.inf))[0] for j in range(A.POSE_DIM)]) - 1e-9
    hi = np.array([RANGES.get(j, (-np.inf, np.inf))[1] for j in range(A.POSE_DIM)]) + 1e-9
    for a in PROC:
        inst = A.Instance(speed=1.1, amp=1.15, phase=float(rng.random()), side=-1)
        P = _poses(a.name, np.linspace(0, 3, 40), inst)
        assert np.isfinite(P).all() and (P[:, A.XOFF] == 0).all()
        if "circle" in a.description:  # a shoulder sweeps round: any angle, wrapped
            assert (np.abs(P[:, A.JOINTS]) <= math.pi + 1e-9).all()
            continue
        assert ((P >= lo) & (P <= hi)).all(), a.name


def test_instances_respected():
    single = next(a.name for a in PROC if a.twin is None and "one leg" in a.description)
    t = 0.37
    base = A.pose_at(single, 2 * t, A.Instance())
    np.testing.assert_allclose(A.pose_at(single, t, A.Instance(speed=2.0)), base, atol=1e-9)
    np.testing.assert_allclose(A.pose_at(single, 0.0, A.Instance(phase=0.25)),
                               A.pose_at(single, 0.25 * LP.CYCLES[single].period, A.Instance()),
                               atol=1e-9)
    np.testing.assert_allclose(A.pose_at(single, t, A.Instance(side=-1)),
                               A.mirror_pose(A.pose_at(single, t, A.Instance())), atol=1e-12)
    big = A.pose_at(single, t, A.Instance(amp=1.1)) - A.neutral_pose()
    small = A.pose_at(single, t, A.Instance(amp=0.9)) - A.neutral_pose()
    assert np.abs(big).sum() > np.abs(small).sum()


def test_heldout_splits_never_show_procedural_classes():
    procedural = {a.name for a in PROC}
    for split in ("val", "test"):
        assert not set(_pool(split)[0]) & procedural
        videos, _ = plan_split(0, split, PRESETS["tiny"])
        assert not {s.name for v in videos for a in v.actors for s in a.segments} & procedural
    assert procedural <= set(_pool("train")[0])
