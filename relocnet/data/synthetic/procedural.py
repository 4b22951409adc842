"""A motion grammar for procedurally generated SynthReloc classes (see library_procedural.py).

A class is a ``Cycle`` of period 0.5-2.5 s made of slots played in order; a slot plays one
sub-movement (``Move``) or several on disjoint joints at the same time, then the body rests in the
neutral pose until the cycle ends. A move takes its joints from the neutral pose to target angles
and back along a velocity profile; a circle sweeps a shoulder once round instead. Everything is
vectorized over time (``Cycle.poses``) so that whole trajectories are cheap to sample.
"""
import math
from dataclasses import dataclass, replace
from typing import Dict, Optional, Tuple

import numpy as np

from .actions import (L_EL, L_HIP, L_KNEE, L_SH, LEAN, LIFT, POSE_DIM, R_EL, R_HIP, R_KNEE,
                      R_SH, neutral_pose)

__all__ = ["RANGES", "PROFILES", "Move", "Cycle", "sample_move", "sample_moves",
           "sample_durations", "sample_rest", "sample_cycle", "build_cycle", "mirror_poses"]

TAU = 2 * math.pi
QUANTUM = 0.05  # slot durations are multiples of 50 ms: twins then share sampled poses exactly
VMAX = 14.0  # peak joint speed (rad/s at speed 1), about that of the held-out punches
# joint ranges (radians; LIFT in body heights). Shoulders reach below 0 (the arm crosses the
# midline, as in claps and hugs); forearm/shin directions are limited separately (sample_move).
RANGES: Dict[int, Tuple[float, float]] = {
    L_SH: (-1.2, math.pi), R_SH: (-1.2, math.pi), L_EL: (-2.4, 0.3), R_EL: (-2.4, 0.3),
    L_HIP: (0.0, 1.4), R_HIP: (0.0, 1.4), L_KNEE: (-2.0, 0.0), R_KNEE: (-2.0, 0.0),
    LEAN: (-0.6, 0.6), LIFT: (0.0, 0.15)}
_LO = np.array([RANGES.get(j, (-np.inf, np.inf))[0] for j in range(POSE_DIM)])
_HI = np.array([RANGES.get(j, (-np.inf, np.inf))[1] for j in range(POSE_DIM)])
_MIRROR = [R_SH, R_EL, L_SH, L_EL, R_HIP, R_KNEE, L_HIP, L_KNEE, LEAN, LIFT, 10]
_MIRROR_SIGN = np.array([1.0] * 8 + [-1.0, 1.0, -1.0])


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _updown(u, up, hold=0.0):
    """0 -> 1 over the first ``up`` of [0, 1], hold, back to 0 over the rest (smoothstep)."""
    down = up + hold
    return np.where(u < up, _smooth(u / up), 1.0 - _smooth((u - down) / (1.0 - down)))


# velocity profiles over u in [0, 1]: 0 at both ends, peak 1; (function, peak slope)
PROFILES = {
    "sine": (lambda u: np.sin(math.pi * u), math.pi),
    "bump": (lambda u: 0.5 - 0.5 * np.cos(TAU * u), math.pi),
    "fast-out-slow-back": (lambda u: _updown(u, 0.25), 6.0),
    "slow-out-fast-back": (lambda u: _updown(u, 0.75), 6.0),
    "hold": (lambda u: _updown(u, 0.3, 0.4), 5.0),
}
GROUPS = ("left_arm", "right_arm", "both_arms", "alternating_arms", "one_leg", "both_legs",
          "lean", "lift", "squat")
_GROUP_P = np.array([3, 3, 3, 2, 3, 1, 1.5, 1, 1.5])


@dataclass(frozen=True)
class Move:
    group: str
    joints: Tuple[int, ...]
    deltas: Tuple[float, ...]  # target minus neutral, per joint
    profile: str
    anti: Tuple[int, ...] = ()  # joints that move in the second half (alternating arms)
    circle: int = 0  # +1 / -1: the shoulders in ``joints[:2]`` sweep once round (out / in first)

    def add(self, p: np.ndarray, u: np.ndarray, amp: float) -> None:
        """Add this move at progress ``u`` (array in [0, 1]) to poses ``p`` (T x POSE_DIM)."""
        fn = PROFILES[self.profile][0]
        v, w = (fn(np.clip(2 * u, 0, 1)), fn(np.clip(2 * u - 1, 0, 1))) if self.anti else (fn(u), 0)
        for j, d in zip(self.joints, self.deltas):
            p[:, j] += amp * d * (w if j in self.anti else v)


@dataclass(frozen=True)
class Cycle:
    moves: Tuple[Move, ...]
    slots: Tuple[Tuple[float, float, Tuple[int, ...]], ...]  # (start s, duration s, move indices)
    period: float
    secondary: Optional[Tuple[int, float, int]] = None  # joint, amplitude, waves per cycle
    reverse: bool = False  # played backwards in time

    def poses(self, x: np.ndarray, amp: float = 1.0) -> np.ndarray:
        """Poses (T x POSE_DIM) at ``x`` seconds into the cycle (any real; taken modulo period)."""
        x = np.mod(np.asarray(x, float), self.period)
        if self.reverse:
            x = np.mod(self.period - x, self.period)
        p = np.tile(neutral_pose(), (len(x), 1))
        rounds = np.zeros((len(x), POSE_DIM))
        for start, dur, idx in self.slots:
            inside = (x >= start) & (x < start + dur)
            u = np.where(inside, (x - start) / dur, 0.0)
            for i in idx:
                m = self.moves[i]
                for j in (m.joints if m.circle else ()):
                    if j in (L_SH, R_SH):
                        rounds[:, j] += m.circle * TAU * _smooth(u) * inside
                m.add(p, np.where(inside, u, 0.0), amp)
        if self.secondary is not None:
            j, a, k = self.secondary
            p[:, j] += amp * a * np.sin(TAU * k * x / self.period)
        p = np.clip(p, _LO, _HI) + rounds
        if rounds.any():
            p[:, :LEAN] = np.mod(p[:, :LEAN] + math.pi, TAU) - math.pi
        return p

    def reversed(self) -> "Cycle":
        return replace(self, reverse=not self.reverse)

    def faster(self, factor: int = 2) -> "Cycle":
        return replace(self, slots=tuple((s / factor, d / factor, i) for s, d, i in self.slots),
                       period=self.period / factor)


def mirror_poses(p: np.ndarray) -> np.ndarray:
    """mirror_pose (actions.py) of every row of ``p``."""
    return p[..., _MIRROR] * _MIRROR_SIGN


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _arm_targets(rng):
    kind = rng.choice(["raise", "bend", "reach", "reach"])
    sh = _u(rng, *RANGES[L_SH]) if kind != "bend" else _u(rng, -0.3, 1.8)
    el = _u(rng, -0.3, 0.3) if kind == "raise" else _u(rng, *RANGES[L_EL])
    if sh < 0:
        el = min(el, 0.0)
    el = max(el, -2.6 - sh)  # forearm direction: the hand stays off the face
    return sh, el


def _leg_targets(rng, both: bool):
    if both:
        hip = _u(rng, 0.1, 0.7)
        return hip, max(_u(rng, -1.0, 0.0), -1.0 - hip)
    hip = _u(rng, 0.2, 1.4)
    knee = 0.0 if rng.random() < 0.3 else _u(rng, *RANGES[L_KNEE])
    return hip, max(knee, -1.1 - hip)  # shin at most ~60 deg past vertical towards the midline


def sample_move(rng, group: str, profile: Optional[str] = None, circle: int = 0) -> Move:
    """A random move of limb ``group`` (the right side stands for 'one' arm/leg)."""
    n = neutral_pose()
    profile = profile or str(rng.choice(list(PROFILES)))
    if group in ("left_arm", "right_arm", "both_arms", "alternating_arms"):
        sides = {"left_arm": [(L_SH, L_EL)], "right_arm": [(R_SH, R_EL)]}.get(
            group, [(L_SH, L_EL), (R_SH, R_EL)])
        sh, el = _arm_targets(rng)
        if circle:  # the elbow bends (held) while the shoulder sweeps round
            sh, el, profile = n[L_SH], _u(rng, -0.8, 0.0), "hold"
        joints = tuple(j for pair in sides for j in pair)
        deltas = tuple(d for _ in sides for d in (sh - n[L_SH], el - n[L_EL]))
        anti = (R_SH, R_EL) if group == "alternating_arms" else ()
        return Move(group, joints, deltas, profile, anti, circle)
    if group in ("one_leg", "both_legs", "squat"):
        if group == "squat":
            hip = _u(rng, 0.3, 1.1)
            hip_knee = (hip, max(-_u(rng, 1.5, 2.0) * hip, -2.0))
        else:
            hip_knee = _leg_targets(rng, group == "both_legs")
        sides = [(R_HIP, R_KNEE)] if group == "one_leg" else [(L_HIP, L_KNEE), (R_HIP, R_KNEE)]
        joints = tuple(j for pair in sides for j in pair)
        deltas = tuple(d for _ in sides for d in (hip_knee[0] - n[L_HIP], hip_knee[1]))
        return Move(group, joints, deltas, profile)
    if group == "lean":
        return Move(group, (LEAN,), (float(rng.choice([-1, 1])) * _u(rng, 0.2, 0.6),), profile)
    lift = _u(rng, 0.04, 0.15)  # a hop: knees give a little
    return Move(group, (LIFT, L_KNEE, R_KNEE), (lift, -2.0 * lift, -2.0 * lift), profile)


def min_duration(m: Move, vmax: float = VMAX) -> float:
    """Shortest duration (quantized) of ``m`` that keeps its peak joint speed under ``vmax``."""
    if m.circle:
        span, slope = TAU, 1.5
    else:
        span = max((abs(d) for j, d in zip(m.joints, m.deltas) if j != LIFT), default=0.5)
        slope = PROFILES[m.profile][1] * (2 if m.anti else 1)
    return math.ceil(max(0.3, slope * span / vmax) / QUANTUM) * QUANTUM


def _quantize(x: float) -> float:
    return round(x / QUANTUM) * QUANTUM


def _disjoint(moves) -> bool:
    used = [j for m in moves for j in m.joints]
    return len(used) == len(set(used))


def build_cycle(moves, pattern, durations, rest: float = 0.0, secondary=None) -> Optional[Cycle]:
    """The cycle playing ``pattern`` (slots of move indices), move i lasting ``durations[i]``."""
    slots, t = [], 0.0
    for idx in pattern:
        d = max(durations[i] for i in idx)
        slots.append((t, d, tuple(idx)))
        t += d
    period = max(_quantize(t + rest), 0.5)
    return Cycle(tuple(moves), tuple(slots), period, secondary) if period <= 2.5 + 1e-9 else None


def sample_moves(rng, n_moves: int):
    groups = rng.choice(len(GROUPS), n_moves, replace=False, p=_GROUP_P / _GROUP_P.sum())
    return tuple(sample_move(rng, GROUPS[g]) for g in groups)


def sample_durations(rng, moves, vmax: float = VMAX):
    out = []
    for m in moves:
        lo = min_duration(m, vmax)
        out.append(max(lo, _quantize(_u(rng, lo, max(lo, 1.0)))))
    return out


def sample_rest(rng) -> float:
    return _quantize(_u(rng, 0.0, 0.5)) if rng.random() < 0.4 else 0.0


def sample_cycle(rng, moves, together: bool = False, vmax: float = VMAX,
                 secondary: bool = True) -> Optional[Cycle]:
    """A random cycle of ``moves``; None when the draw does not fit (period over 2.5 s, shared
    joints played together)."""
    if together and not _disjoint(moves):
        return None
    pattern = [(i,) for i in range(len(moves))] if not together else [tuple(range(len(moves)))]
    if not together and len(moves) < 3 and rng.random() < 0.3:
        pattern = [pattern[0]] + pattern  # the first move twice per cycle
    durations = sample_durations(rng, moves, vmax)
    rest = sample_rest(rng)
    sec = None
    used = {j for m in moves for j in m.joints}
    free = [j for j in (LEAN, L_EL, R_EL, L_SH, R_SH) if j not in used]
    if secondary and free and rng.random() < 0.35:
        sec = (int(rng.choice(free)), _u(rng, 0.08, 0.2), int(rng.integers(1, 4)))
    return build_cycle(moves, pattern, durations, rest, sec)
