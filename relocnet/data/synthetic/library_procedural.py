"""Procedurally generated SynthReloc train classes (``proc_000`` ...), registered at import.

``N_CLASSES`` classes are drawn from the motion grammar of procedural.py with a fixed seed: a cycle
of 1-3 sub-movements (arms, legs, lean, hop, squat) played in order or together, with random target
angles over wide joint ranges, a velocity profile and sometimes a small secondary motion. Single
classes are mirrored per instance (``inst.side``) like the hand-designed singles; about
``TWIN_SHARE`` of the classes come as motion-only twin pairs (time reversal of a fast-out-slow-back
profile, a circle in the other direction, a swapped order of sub-movements, double speed), which
never mirror.

Held-out classes stay unseen. The distance of a candidate to a class is the mean, over a 4-s grid
at 8 Hz (speed 1, amp 1), of ``pose_distance``, minimised over 12 phase offsets of the candidate and
over mirroring it. A candidate is rejected when it lies within ``THRESHOLD`` = 0.3 rad (17 deg) of a
val/test class or of an accepted class. Why 0.3: by this measure distinct hand-designed classes lie
0.52 rad or more apart (nearest: kick / jump_steady), their velocity-profile and speed twins
0.39-0.75 apart; a class within 0.3 moves every joint, on average over the cycle, within ~17 deg of
a held-out class (a copy with slightly other targets, rhythm or amplitude), while classes that only
share single poses with the held-out ones (bent-elbow punches, raised knees, claps) but move
otherwise stay. With the default seed, 240 classes are accepted after 17 candidates were rejected as
too close to a held-out class and 37 as too close to an accepted one (``STATS``). Generation and
the check take about 0.7 s at import (vectorized in float32; a cheap lower bound skips far pairs).
"""
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from .actions import (LIFT, Instance, classes, cycle, mirror_pose, pose_at, register,
                      register_twins)
from .procedural import (L_SH, LEAN, R_SH, VMAX, Cycle, build_cycle, mirror_poses,
                         sample_cycle, sample_durations, sample_move, sample_moves, sample_rest)

__all__ = ["N_CLASSES", "SEED", "THRESHOLD", "TWIN_SHARE", "STATS", "CYCLES", "generate",
           "distance", "describe"]

N_CLASSES = 240
SEED = 20261202
THRESHOLD = 0.3
TWIN_SHARE = 0.2
GRID = np.arange(0.0, 4.0, 1.0 / 8.0)
OFFSETS = np.arange(12) / 12.0
CHUNKS = 8  # stretches of GRID for the pruning bound (0.5 s)
_DIMS = list(range(LEAN + 1)) + [LIFT]  # what pose_distance compares
STATS = {}  # rejections by reason (heldout, duplicate, twin_gap, unfit) and accepted classes
CYCLES: Dict[str, Cycle] = {}  # the registered classes' cycles, by name

_NAMES = {"left_arm": "left arm", "right_arm": "right arm", "both_arms": "both arms",
          "alternating_arms": "arms in alternation", "one_leg": "one leg", "both_legs": "both legs",
          "lean": "upper body", "lift": "hop", "squat": "squat"}
_FLIP = {"fast-out-slow-back": "slow-out-fast-back", "slow-out-fast-back": "fast-out-slow-back"}


def _deg(x: float) -> int:
    return int(round(math.degrees(x)))


def _move_text(m, flip: bool) -> str:
    profile = _FLIP.get(m.profile, m.profile) if flip else m.profile
    name = _NAMES[m.group]
    if m.circle:
        way = "outwards" if (m.circle > 0) != flip else "inwards"
        verb = "circle" if m.group == "both_arms" else "circles"
        return f"{name} {verb} {way} first (elbow {_deg(m.deltas[1] - 0.08)} deg)"
    if m.group == "lean":
        way = "right" if m.deltas[0] > 0 else "left"
        return f"upper body leans {way} {_deg(abs(m.deltas[0]))} deg ({profile})"
    if m.group == "lift":
        return f"hops {m.deltas[0]:.2f} H high ({profile})"
    a, b = m.deltas[0], m.deltas[1]
    if m.group in ("one_leg", "both_legs", "squat"):
        return f"{name}: hip to {_deg(a + 0.06)} deg, knee {_deg(b)} deg ({profile})"
    return f"{name}: shoulder to {_deg(a + 0.12)} deg, elbow {_deg(b - 0.08)} deg ({profile})"


def describe(cyc: Cycle) -> str:
    """Human-readable description of a cycle."""
    parts, flip = [], cyc.reverse
    for _, _, idx in cyc.slots[::-1] if flip else cyc.slots:
        parts.append(" while ".join(_move_text(cyc.moves[i], flip) for i in idx))
    merged = []
    for p in parts:  # "x, twice" for repeated consecutive slots
        if merged and merged[-1][0] == p:
            merged[-1][1] += 1
        else:
            merged.append([p, 1])
    text = " then ".join(p + (", twice" if k == 2 else "") for p, k in merged)
    text += f"; {1.0 / cyc.period:.2f} Hz"
    if cyc.secondary is not None:
        j, a, k = cyc.secondary
        joint = {LEAN: "lean", L_SH: "left shoulder", R_SH: "right shoulder"}.get(j, "elbow")
        text += f"; small {joint} sway ({_deg(a)} deg, {k}x per cycle)"
    return text


def _views(poses_fn, period: float) -> np.ndarray:
    """(2 x offsets, T, dims) trajectories on GRID: every phase offset, plain and mirrored."""
    t = (GRID[None, :] + OFFSETS[:, None] * period).ravel()
    p = poses_fn(t).reshape(len(OFFSETS), len(GRID), -1)
    return np.concatenate([p, mirror_poses(p)])[..., _DIMS].astype(np.float32)


def _features(v: np.ndarray, chunks: int = 1) -> np.ndarray:
    """Means over ``chunks`` stretches of GRID of cos/sin of the angles and of the lift (..., chunks,
    19). A difference of one feature is at most the mean pose_distance over its stretch, so the mean
    over stretches of the largest difference is a lower bound of the distance: cheap pruning."""
    a = v.reshape(v.shape[:-2] + (chunks, -1, v.shape[-1]))
    x = a[..., :-1]
    return np.concatenate([np.cos(x).mean(-2), np.sin(x).mean(-2), a[..., -1:].mean(-2)], -1)


def _bound(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(M,) lower bounds of the distances of a candidate's views (features f: K, C, 19) to M
    trajectories (features g: M, C, 19)."""
    return np.abs(f[None] - g[:, None]).max(-1).mean(-1).min(-1)


def distance(views: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(M,) distances of a candidate (its ``_views``) to M trajectories (M, T, dims) on GRID."""
    d = np.abs(views[None] - targets[:, None])
    d = np.minimum(d, 2 * math.pi - d)  # wrapped: every angle lies in [-pi, pi]
    return d.max(-1).mean(-1).min(-1)


def _heldout() -> np.ndarray:
    inst = Instance()
    held = [a.name for a in classes("val") + classes("test")]
    return np.stack([[pose_at(n, t, inst) for t in GRID] for n in held])[..., _DIMS]


class _Library:
    """Trajectories that candidates must stay away from (held-out, then accepted classes)."""

    def __init__(self, n: int):
        held = _heldout()
        self.trajs = np.empty((len(held) + n,) + held.shape[1:], np.float32)
        self.trajs[:len(held)] = held
        self.feats = np.empty((len(self.trajs), 1, 19), np.float32)
        self.chunked = np.empty((len(self.trajs), CHUNKS, 19), np.float32)
        self.held = self.size = len(held)
        self.feats[:self.size] = _features(held)
        self.chunked[:self.size] = _features(held, CHUNKS)

    def fits(self, cyc: Cycle) -> Optional[str]:
        """None when ``cyc`` may join; else why not ('heldout' | 'duplicate')."""
        v = _views(cyc.poses, cyc.period)
        near = np.nonzero(_bound(_features(v), self.feats[:self.size]) < THRESHOLD)[0]
        near = near[_bound(_features(v, CHUNKS), self.chunked[near]) < THRESHOLD]
        near = near[distance(v, self.trajs[near]) < THRESHOLD]
        if len(near) == 0:
            return None
        return "heldout" if near.min() < self.held else "duplicate"

    def add(self, cyc: Cycle) -> None:
        v = _views(cyc.poses, cyc.period)[0]
        self.trajs[self.size] = v
        self.feats[self.size] = _features(v)
        self.chunked[self.size] = _features(v, CHUNKS)
        self.size += 1


def motion_gap(a: Cycle, b: Cycle) -> float:
    """How far the motions of twins stay apart: the smallest, over time shifts of b, of the largest
    joint difference over a 2-s window (the measure of tests/test_synthetic.py)."""
    win = 0.5 + np.arange(48) / 24.0
    shifts = np.arange(0.0, b.period, 1.0 / 48.0)
    pa = a.poses(win)[:, :LEAN + 1]
    pb = b.poses((win[None, :] + shifts[:, None]).ravel()).reshape(len(shifts), 48, -1)[..., :LEAN + 1]
    d = np.abs(np.mod(pb - pa[None] + math.pi, 2 * math.pi) - math.pi)
    return float(d.max(-1).max(-1).min())


def _twin_pair(rng, kind: str) -> Optional[Tuple[Cycle, Cycle]]:
    """Two cycles with the same poses and different motion (``kind``, see actions.py)."""
    if kind in ("velocity_profile", "direction"):
        group = str(rng.choice(["left_arm", "right_arm", "both_arms"]))
        if kind == "direction":
            first = sample_move(rng, group, circle=int(rng.choice([-1, 1])))
        else:
            first = sample_move(rng, str(rng.choice(["alternating_arms", "one_leg", "squat", group])),
                                profile="fast-out-slow-back")
        moves = (first,) + (sample_moves(rng, 1) if rng.random() < 0.4 else ())
        a = sample_cycle(rng, moves, secondary=False)
        return None if a is None else (a, a.reversed())
    if kind == "speed":
        a = sample_cycle(rng, sample_moves(rng, int(rng.integers(1, 3))), vmax=VMAX / 2,
                         secondary=False)
        return None if a is None or a.period < 1.0 else (a, a.faster(2))
    moves = sample_moves(rng, int(rng.integers(2, 4)))  # order
    durations, rest = sample_durations(rng, moves), sample_rest(rng)
    if len(moves) == 2:
        pa, pb = [(0,), (0,), (1,)], [(1,), (1,), (0,)]
    else:
        pa, pb = [(0,), (1,), (2,)], [(0,), (2,), (1,)]
    a, b = build_cycle(moves, pa, durations, rest), build_cycle(moves, pb, durations, rest)
    return None if a is None or b is None else (a, b)


def _twin_text(kind: str, a: Cycle, b: Cycle) -> Tuple[str, str]:
    if kind in ("velocity_profile", "direction"):
        return describe(a), describe(b)
    if kind == "speed":
        return describe(a) + " (slow twin)", describe(b) + " (twice as fast)"
    return describe(a), describe(b)


def _single(rng) -> Optional[Cycle]:
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
    return sample_cycle(rng, sample_moves(rng, n), together=n > 1 and rng.random() < 0.35)


def _family(cyc: Cycle) -> str:
    return "procedural/" + "+".join(sorted({m.group for m in cyc.moves}))


def generate(n: int = N_CLASSES, seed: int = SEED) -> Tuple[List[tuple], dict]:
    """Accepted classes as (cycle, description, twin_kind or None, index of the twin or None)."""
    rng = np.random.default_rng(seed)
    lib, out = _Library(n), []
    stats = {"heldout": 0, "duplicate": 0, "twin_gap": 0, "unfit": 0}
    kinds = ("velocity_profile", "order", "direction", "speed")
    n_twins = 0
    while len(out) < n:
        twin = n - len(out) >= 2 and n_twins + 2 <= TWIN_SHARE * (len(out) + 2)
        kind = kinds[(n_twins // 2) % len(kinds)]
        cands = _twin_pair(rng, kind) if twin else _single(rng)
        if cands is None:
            stats["unfit"] += 1
            continue
        cands = cands if twin else (cands,)
        why = "twin_gap" if twin and motion_gap(*cands) < 0.35 else None
        why = why or next((w for w in map(lib.fits, cands) if w), None)
        if why is not None:
            stats[why] += 1
            continue
        for c in cands:
            lib.add(c)
        if twin:
            ta, tb = _twin_text(kind, *cands)
            i = len(out)
            out += [(cands[0], ta, kind, i + 1), (cands[1], tb, kind, i)]
            n_twins += 2
        else:
            out.append((cands[0], describe(cands[0]), None, None))
    return out, stats


def _fn(cyc: Cycle, mirrors: bool):
    freq = 1.0 / cyc.period

    def fn(t, inst):
        p = cyc.poses(np.array([cycle(t, inst, freq) * cyc.period]), inst.amp)[0]
        return mirror_pose(p) if mirrors and inst.side < 0 else p
    return fn


def _register(n: int = N_CLASSES) -> None:
    accepted, stats = generate(n)
    STATS.update(stats, accepted=len(accepted))
    for i, (cyc, text, kind, twin) in enumerate(accepted):
        CYCLES[f"proc_{i:03d}"] = cyc
        if kind is None:
            register(f"proc_{i:03d}", "train", _family(cyc), text, procedural=True)(_fn(cyc, True))
        elif twin > i:
            other = accepted[twin]
            register_twins("train", _family(cyc), kind,
                           (f"proc_{i:03d}", text, _fn(cyc, False)),
                           (f"proc_{twin:03d}", other[1], _fn(other[0], False)), procedural=True)


_register()
