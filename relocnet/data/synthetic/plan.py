"""Random but seeded plans of SynthReloc videos and query/reference pairs (no rendering here).

A reference video is planned around a target class A: one actor does A in one (sometimes two)
whole-second segments and something else the rest of the time; 0-3 distractor actors do other
actions at the same time. The non-matching stretches and the distractors often do A's motion twin
(identical in every single frame), so that appearance alone cannot find A. A query video is a
trimmed 2-5 s clip of one actor doing A. Val/test videos use their own classes plus the
hand-designed train classes as fillers (not the procedural ones, so that the held-out splits do not
change with them); train videos draw from all train classes and never show a val/test class.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..pairs import seconds_to_segments
from .actions import ACTIONS, IDLE, XOFF, Instance, classes, pose_at
from .actors import TEXTURE_KINDS, Appearance, random_colour
from .scene import (MARGIN, WORLD_H, WORLD_W, ActorPlan, Background, Camera, Occluder, Segment,
                    VideoPlan)

__all__ = ["SPLITS", "PRESETS", "TIERS", "Preset", "Tier", "PairPlan", "plan_split", "plan_clips",
           "class_runs"]

SPLITS = ("train", "val", "test")
X_LO, X_HI = MARGIN + 20.0, WORLD_W - MARGIN - 20.0  # world x range allowed for a pelvis
H_MIN, H_MAX = 30.0, 72.0  # body heights: 25-60 % of the 120-px frame


@dataclass(frozen=True)
class Preset:
    references: Dict[str, int]  # reference videos per split
    reference_seconds: Tuple[int, int]  # min, max length of a reference video
    query_seconds: Tuple[int, int]
    queries_per_class: int  # size of each class's pool of query clips (reused across pairs)
    extra_pair_prob: float = 0.5  # chance that a reference also serves a second class


PRESETS = {
    "tiny": Preset({"train": 3, "val": 2, "test": 2}, (6, 7), (2, 3), 1),  # for tests
    "small": Preset({"train": 76, "val": 22, "test": 22}, (8, 12), (2, 5), 2, 0.7),
    # medium: the CPU default models' training set (generates in ~10 min on 2 cores)
    "medium": Preset({"train": 500, "val": 60, "test": 100}, (8, 16), (2, 5), 12),
    "full": Preset({"train": 1350, "val": 150, "test": 225}, (8, 20), (2, 5), 30),
}


@dataclass(frozen=True)
class Tier:
    """How hard the reference videos are (every tier tests classes never seen in training)."""
    actors: Tuple[float, ...]  # probability of 1, 2, 3, ... actors in a reference
    twins: float  # scales the chance that fillers and distractors do the target's motion twin
    heights: Tuple[float, float]  # body heights in pixels (of the 120-px frame) in references
    query_heights: Tuple[float, float]
    occluders: bool = True
    perspective: bool = True  # small actors stand lower when larger; else anywhere fully in view
    # instances of asymmetric classes on either side (balance on the left or the right leg); off,
    # every class keeps its own side, as motion twins always do (punch_llr mirrored is punch_rrl)
    mirror: bool = True

    def ground(self, rng: np.random.Generator, height: float) -> float:
        """World y of an actor's feet."""
        if self.perspective:
            return MARGIN + 120 * (0.5 + 0.42 * (height - H_MIN) / (H_MAX - H_MIN)) + rng.uniform(-3, 3)
        return MARGIN + rng.uniform(min(height + 4.0, 117.0), 117.0)


TIERS = {
    # one large actor, never the target's motion twin: recognising the action suffices
    "easy": Tier((1.0,), 0.0, (64.0, 100.0), (64.0, 100.0), occluders=False, perspective=False,
                 mirror=False),
    # 1-3 large actors, half today's share of motion twins
    "standard": Tier((0.4, 0.4, 0.2), 0.5, (54.0, 96.0), (60.0, 96.0), perspective=False,
                     mirror=False),
    # the original design: 1-4 small actors (25-60 % of the frame), many twins, occluders
    "hard": Tier((0.15, 0.35, 0.3, 0.2), 1.0, (H_MIN, H_MAX), (36.0, 66.0)),
}


@dataclass(frozen=True)
class PairPlan:
    pair_id: str
    label: str
    query: str  # video names (relative to videos/)
    reference: str


def _twin_p(split: str, role: str, tier: Tier) -> float:
    held_out = split != "train"
    p = {"target": 0.5 if held_out else 0.3, "distractor": 0.45 if held_out else 0.25}[role]
    return p * tier.twins


def _pool(split: str) -> Tuple[List[str], np.ndarray]:
    own = [a.name for a in classes(split)]
    if split == "train":
        return own, np.full(len(own), 1.0 / len(own))
    train = [a.name for a in classes("train", procedural=False)]  # the same whatever N_CLASSES
    w = np.array([2.0] * len(own) + [1.0] * len(train))
    return own + train, w / w.sum()


def _filler(rng, split: str, avoid: Sequence[str], twin: Optional[str], p_twin: float) -> str:
    if twin is not None and twin not in avoid and rng.random() < p_twin:
        return twin
    if rng.random() < 0.2:
        return IDLE
    names, w = _pool(split)
    keep = np.array([n not in avoid and n != twin for n in names])
    w = w * keep
    return str(rng.choice(names, p=w / w.sum()))


def _fill(rng, start: int, end: int, split: str, avoid, twin, p_twin, mirror: bool
          ) -> List[Segment]:
    out, t = [], start
    while t < end:
        d = min(int(rng.integers(1, 5)), end - t)
        out.append(Segment(_filler(rng, split, avoid, twin, p_twin), t, t + d,
                           Instance.sample(rng, mirror)))
        t += d
    return out


def _offsets(segments: Sequence[Segment]) -> Tuple[float, float]:
    """Extremes of the body's horizontal offset (units of H) along a schedule."""
    x, lo, hi = 0.0, 0.0, 0.0
    for s in segments:
        x += pose_at(s.name, s.end - s.start, s.inst)[XOFF]
        lo, hi = min(lo, x), max(hi, x)
    return lo, hi


def _place(rng, height: float, segments, band=(X_LO, X_HI)) -> Optional[float]:
    lo, hi = _offsets(segments)
    a, b = band[0] - lo * height, band[1] - hi * height
    return float(rng.uniform(a, b)) if b >= a else None


def _max_seconds(name: str, height: float, width: float = X_HI - X_LO) -> int:
    """Longest duration an action can last without walking out of a band ``width`` px wide."""
    if not ACTIONS[name].translates:
        return 10 ** 6
    per_s = abs(pose_at(name, 1.0, Instance(speed=1.1))[XOFF]) * height
    return max(int(width / per_s), 1)


def _actor(rng, segments_fn, tier: Tier, heights=None, band=(X_LO, X_HI), tries: int = 50
           ) -> ActorPlan:
    """Sample an actor and a schedule that keeps its pelvis inside ``band``."""
    for _ in range(tries):
        h = float(rng.uniform(*(heights or tier.heights)))
        segs = segments_fn(h)
        if segs is None:
            continue
        x0 = _place(rng, h, segs, band)
        if x0 is not None:
            ground = float(tier.ground(rng, h))
            return ActorPlan(Appearance.sample(rng, h), ground, x0, tuple(segs))
    raise RuntimeError("could not place an actor inside the frame")  # pragma: no cover


def _target_segments(rng, h, A: str, L: int, split: str, tier: Tier):
    n = 2 if L >= 12 and rng.random() < 0.25 else 1
    dmax = min(6 if n == 1 else 4, L // 2 if n == 1 else L // 4, _max_seconds(A, h))
    if dmax < 2:
        return None
    durs = [int(rng.integers(2, dmax + 1)) for _ in range(n)]
    free = L - sum(durs) - 2 * (n - 1)
    cuts = np.sort(rng.integers(0, free + 1, n))
    gaps = np.diff(np.concatenate([[0], cuts, [free]])).tolist()
    for i in range(1, n):
        gaps[i] += 2
    twin, p = ACTIONS[A].twin, _twin_p(split, "target", tier)
    segs, t = [], 0
    for i in range(n + 1):
        segs += _fill(rng, t, t + gaps[i], split, [A], twin, p, tier.mirror)
        t += gaps[i]
        if i < n:
            segs.append(Segment(A, t, t + durs[i], Instance.sample(rng, tier.mirror)))
            t += durs[i]
    return segs


def _paint(segs: List[Segment], s: int, e: int, name: str, inst: Instance) -> List[Segment]:
    out = []
    for g in segs:
        if g.start < s:
            out.append(Segment(g.name, g.start, min(g.end, s), g.inst))
        if g.end > e:
            out.append(Segment(g.name, max(g.start, e), g.end, g.inst))
    out.append(Segment(name, s, e, inst))
    return sorted(out, key=lambda g: g.start)


def _distractor_segments(rng, h, A: str, L: int, split: str, co: Optional[Tuple[int, int]],
                         tier: Tier):
    segs = _fill(rng, 0, L, split, [A], ACTIONS[A].twin, _twin_p(split, "distractor", tier),
                 tier.mirror)
    if co is not None and co[1] - co[0] <= _max_seconds(A, h):
        segs = _paint(segs, co[0], co[1], A, Instance.sample(rng, tier.mirror))
    return segs


def _background(rng) -> Background:
    kind = str(rng.choice(["noise", "stripes", "checker", "gradient"], p=[0.4, 0.2, 0.15, 0.25]))
    cols = tuple(random_colour(rng) for _ in range(4))
    horizon = float(MARGIN + 120 * rng.uniform(0.3, 0.5))
    speed = rng.uniform(0, 25) * (rng.random() < 0.7)
    ang = rng.uniform(0, 2 * np.pi)
    vel = (float(speed * np.cos(ang)), float(speed * np.sin(ang)) if kind != "gradient" else 0.0)
    clutter = []
    for _ in range(int(rng.integers(2, 9))):
        x, y = int(rng.integers(0, WORLD_W)), int(rng.integers(0, int(horizon) + 20))
        if rng.random() < 0.6:  # limb-like sticks
            ln, a = rng.uniform(6, 25), rng.uniform(0, np.pi)
            clutter.append(("line", x, y, int(x + ln * np.cos(a)), int(y + ln * np.sin(a)),
                            int(rng.integers(2, 6)), random_colour(rng)))
        else:
            clutter.append(("ellipse", x, y, int(rng.integers(2, 9)), int(rng.integers(2, 9)),
                            int(rng.integers(0, 180)), random_colour(rng)))
    balls = tuple((float(rng.uniform(0, WORLD_W)), float(rng.uniform(0, WORLD_H)),
                   float(rng.uniform(-50, 50)), float(rng.uniform(-30, 30)),
                   float(rng.uniform(2, 6)), random_colour(rng)) for _ in range(int(rng.integers(0, 4))))
    return Background(kind, cols, horizon, vel, tuple(clutter), balls,
                      (float(rng.uniform(0, 0.12)), float(rng.uniform(0.1, 0.5)),
                       float(rng.uniform(0, 6.3))), float(rng.uniform(1, 5)), int(rng.integers(2 ** 31)))


def _camera(rng) -> Camera:
    z = tuple(float(v) for v in rng.uniform(1.0, 1.15, 2))
    pan = (float(rng.uniform(0, 5)), float(rng.uniform(0, 3)), float(rng.uniform(0.05, 0.3)),
           *(float(v) for v in rng.uniform(0, 6.3, 3)))
    roll = (float(rng.uniform(0, 0.025)), float(rng.uniform(0.05, 0.2)), float(rng.uniform(0, 6.3)))
    shake = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.4 else 0.0
    return Camera(z, pan, roll, shake, int(rng.integers(2 ** 31)))


def _texture_spec(rng):
    return (str(rng.choice(TEXTURE_KINDS)), random_colour(rng), random_colour(rng), float(rng.uniform(4, 12)))


def _occluders(rng, L: int, horizon: float, moving: bool) -> Tuple[Occluder, ...]:
    out = []
    for _ in range(int(rng.choice([0, 1, 2], p=[0.45, 0.4, 0.15]))):
        w, h = rng.uniform(10, 35), rng.uniform(20, 60)
        bottom = rng.uniform(horizon + 15, WORLD_H)
        x = rng.uniform(MARGIN, WORLD_W - MARGIN - w)
        out.append(Occluder((float(x), float(bottom - h), float(x + w), float(bottom)), _texture_spec(rng)))
    if moving and rng.random() < 0.25:
        w, h = rng.uniform(20, 50), rng.uniform(25, 55)
        v = float(rng.uniform(30, 70) * rng.choice([-1, 1]))
        x = -w if v > 0 else WORLD_W
        t0 = float(rng.uniform(0, max(L - 2, 0.5)))
        out.append(Occluder((float(x), float(WORLD_H - h), float(x + w), float(WORLD_H)),
                            _texture_spec(rng), v, (t0, t0 + (WORLD_W + w) / abs(v))))
    return tuple(out)


def _reference(rng, name: str, A: str, L: int, split: str, tier: Tier) -> VideoPlan:
    target = _actor(rng, lambda h: _target_segments(rng, h, A, L, split, tier), tier)
    n = int(rng.choice(np.arange(1, len(tier.actors) + 1), p=tier.actors))
    a_runs = [(s.start, s.end) for s in target.segments if s.name == A]
    actors = [target]
    for j in range(1, n):
        co = None
        if j == 1 and rng.random() < 0.12:
            s, e = a_runs[int(rng.integers(len(a_runs)))]
            a = int(rng.integers(s, e))
            co = (a, int(rng.integers(a + 1, e + 1)))
        actors.append(_actor(rng, lambda h: _distractor_segments(rng, h, A, L, split, co, tier), tier))
    bg = _background(rng)
    order = rng.permutation(len(actors))  # the target is not always actor 0
    return VideoPlan(name, L, bg, _camera(rng), tuple(actors[i] for i in order),
                     _occluders(rng, L, bg.horizon, moving=True) if tier.occluders else ())


def _query(rng, name: str, A: str, lengths: Tuple[int, int], tier: Tier) -> VideoPlan:
    def segs(h):
        q = min(int(rng.integers(lengths[0], lengths[1] + 1)), _max_seconds(A, h, X_HI - X_LO - 30))
        return [Segment(A, 0, q, Instance.sample(rng, tier.mirror))] if q >= 2 else None
    actor = _actor(rng, segs, tier, heights=tier.query_heights, band=(X_LO + 15, X_HI - 15))
    bg = _background(rng)
    occ = (_occluders(rng, actor.segments[-1].end, bg.horizon, moving=False)[:1]
           if rng.random() < 0.3 and tier.occluders else ())
    return VideoPlan(name, actor.segments[-1].end, bg, _camera(rng), (actor,), occ)


def class_runs(plan: VideoPlan, name: str) -> List[Tuple[int, int]]:
    """Maximal runs [s, e) of seconds in which at least one actor does ``name``."""
    secs = sorted({t for a in plan.actors for s in a.segments if s.name == name
                   for t in range(s.start, s.end)})
    return [(s, e) for s, e in seconds_to_segments(secs)]


def _pairable(plan: VideoPlan, name: str) -> bool:
    runs = class_runs(plan, name)
    return (1 <= len(runs) <= 2 and all(e - s >= 2 for s, e in runs)
            and sum(e - s for s, e in runs) <= 0.6 * plan.length)


def plan_split(seed: int, split: str, preset: Preset, tier: str = "hard"
               ) -> Tuple[List[VideoPlan], List[PairPlan]]:
    """All videos (references first, then queries) and pairs of one split of a tier."""
    if tier not in TIERS:
        raise ValueError(f"unknown SynthReloc tier {tier!r}; choose one of {sorted(TIERS)}")
    tier_ = TIERS[tier]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    own = [a.name for a in classes(split)]
    refs, wanted = [], []  # wanted: (reference index, class)
    for i in range(preset.references[split]):
        A = own[i % len(own)]
        L = int(rng.integers(preset.reference_seconds[0], preset.reference_seconds[1] + 1))
        plan = _reference(rng, f"{split}/ref_{i:05d}.mp4", A, L, split, tier_)
        refs.append(plan)
        wanted.append((i, A))
        extra = [c for c in own if c != A and _pairable(plan, c)]
        if extra and rng.random() < preset.extra_pair_prob:
            wanted.append((i, str(rng.choice(extra))))
    counts: Dict[str, int] = {}
    for _, c in wanted:
        counts[c] = counts.get(c, 0) + 1
    queries, pools = [], {}
    for c in own:
        pools[c] = []
        for k in range(min(preset.queries_per_class, counts.get(c, 0))):
            q = _query(rng, f"{split}/query_{c}_{k:03d}.mp4", c, preset.query_seconds, tier_)
            queries.append(q)
            pools[c].append(q.name)
    used: Dict[str, int] = {}
    pairs = []
    for i, c in wanted:
        k = used.get(c, 0)
        used[c] = k + 1
        pairs.append(PairPlan(f"{split}_{i:05d}_{c}", c, pools[c][k % len(pools[c])], refs[i].name))
    return refs + queries, pairs


def plan_clips(seed: int, names: Sequence[str], per_class: int, seconds: int, tier: str = "easy"
               ) -> List[VideoPlan]:
    """``per_class`` clips of one actor doing each class for ``seconds`` (shorter for a walk that
    would leave the frame), each with its own actor, background and camera."""
    rng = np.random.default_rng([seed, 1000 + len(SPLITS)])
    return [_query(rng, f"clip_{n}_{k:03d}.mp4", n, (seconds, seconds), TIERS[tier])
            for n in names for k in range(per_class)]
