"""The SynthReloc action library: each class is a joint-angle trajectory over time.

A pose is a float vector indexed by the constants below. Limb angles are in radians, measured
from "hanging straight down" and mirrored per side: a positive shoulder/hip angle moves the limb
away from the body's midline, ``pi`` points it straight up. Elbow/knee angles are added to the
parent angle with the same convention. ``LEAN`` rotates the upper body about the pelvis (positive:
head towards image-right). ``LIFT`` raises the body above the ground (units of body height H);
``XOFF`` is the horizontal body translation since the start of the action (units of H).

Motion-only twins share their set of poses exactly and differ only in how the poses follow each
other: direction, speed, rhythm, order of sub-movements, or velocity profile (time reversal).
Limbs named L/R are the image-left/right ones; twins never mirror their limbs per instance.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["L_SH", "L_EL", "R_SH", "R_EL", "L_HIP", "L_KNEE", "R_HIP", "R_KNEE", "LEAN", "LIFT",
           "XOFF", "POSE_DIM", "JOINTS", "Instance", "ActionSpec", "ACTIONS", "IDLE", "action",
           "neutral_pose", "pose_at", "mirror_pose", "pose_distance", "classes"]

L_SH, L_EL, R_SH, R_EL, L_HIP, L_KNEE, R_HIP, R_KNEE, LEAN, LIFT, XOFF = range(11)
POSE_DIM = 11
JOINTS = slice(0, 9)  # the angles (limbs + lean): what a single frame shows of the pose
TAU = 2 * math.pi


@dataclass(frozen=True)
class Instance:
    """Per-instance variation of an action: speed and amplitude factors, phase (cycles), side."""
    speed: float = 1.0
    amp: float = 1.0
    phase: float = 0.0
    side: int = 1  # +1 / -1: mirrors asymmetric single classes (never used by twins)

    @staticmethod
    def sample(rng: np.random.Generator) -> "Instance":
        return Instance(speed=float(rng.uniform(0.9, 1.1)), amp=float(rng.uniform(0.85, 1.15)),
                        phase=float(rng.uniform(0.0, 1.0)), side=int(rng.choice([-1, 1])))


@dataclass(frozen=True)
class ActionSpec:
    name: str
    split: str  # train | val | test | "" (idle)
    family: str
    description: str  # what the class looks like and what distinguishes it
    fn: Callable[[float, Instance], np.ndarray] = field(repr=False)
    twin: Optional[str] = None  # the motion-only twin: same poses, different motion
    twin_kind: Optional[str] = None  # direction | speed | rhythm | order | velocity_profile
    translates: bool = False  # moves the body sideways (XOFF changes)


def neutral_pose() -> np.ndarray:
    p = np.zeros(POSE_DIM)
    p[[L_SH, R_SH]] = 0.12
    p[[L_EL, R_EL]] = -0.08
    p[[L_HIP, R_HIP]] = 0.06
    return p


def cycle(t: float, inst: Instance, freq: float) -> float:
    """Phase in [0, 1) of a cycle of ``freq`` Hz (scaled by the instance's speed)."""
    return (freq * inst.speed * t + inst.phase) % 1.0


def smooth(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def bump(x: float) -> float:
    """0 -> 1 -> 0 over x in [0, 1] (smooth)."""
    return 0.5 - 0.5 * math.cos(TAU * min(max(x, 0.0), 1.0))


def hop(x: float) -> Tuple[float, float]:
    """One jump over x in [0, 1]: crouch, flight (parabola), landing crouch -> (lift, crouch)."""
    if 0.2 <= x < 0.8:
        v = (x - 0.2) / 0.6
        return 4 * v * (1 - v), 0.0
    return 0.0, bump(x / 0.2) if x < 0.2 else bump((x - 0.8) / 0.2)


ACTIONS: Dict[str, ActionSpec] = {}


def register(name, split, family, description, twin=None, twin_kind=None, translates=False):
    def deco(fn):
        ACTIONS[name] = ActionSpec(name, split, family, description, fn, twin, twin_kind, translates)
        return fn
    return deco


def register_twins(split: str, family: str, twin_kind: str, first: Tuple[str, str, Callable],
                   second: Tuple[str, str, Callable], translates: bool = False) -> None:
    """Register two motion-only twin classes, each given as (name, description, fn(t, inst))."""
    (na, da, fa), (nb, db, fb) = first, second
    register(na, split, family, da, nb, twin_kind, translates)(fa)
    register(nb, split, family, db, na, twin_kind, translates)(fb)


def action(name: str) -> ActionSpec:
    if name not in ACTIONS:
        raise KeyError(f"unknown SynthReloc action {name!r}; known: {sorted(ACTIONS)}")
    return ACTIONS[name]


def pose_at(name: str, t: float, inst: Instance) -> np.ndarray:
    """Pose of action ``name`` at ``t`` seconds after the action started."""
    return ACTIONS[name].fn(float(t), inst)


def mirror_pose(p: np.ndarray) -> np.ndarray:
    q = p.copy()
    q[[L_SH, L_EL, L_HIP, L_KNEE]] = p[[R_SH, R_EL, R_HIP, R_KNEE]]
    q[[R_SH, R_EL, R_HIP, R_KNEE]] = p[[L_SH, L_EL, L_HIP, L_KNEE]]
    q[[LEAN, XOFF]] = -p[[LEAN, XOFF]]
    return q


def pose_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Largest joint-angle difference (wrapped to [-pi, pi]) plus lift difference; ignores XOFF."""
    d = np.angle(np.exp(1j * (a[JOINTS] - b[JOINTS])))
    return float(max(np.abs(d).max(), abs(a[LIFT] - b[LIFT])))


# ------------------------------------------------------------------------ idle (not a class)
IDLE = "idle"


@register(IDLE, "", "idle", "standing, arms swaying slightly (not a query class)")
def _idle(t, inst):
    p = neutral_pose()
    s = math.sin(TAU * (0.35 * inst.speed * t + inst.phase))
    p[[L_SH, R_SH]] += 0.05 * s
    p[[L_EL, R_EL]] += 0.04 * s
    return p


def classes(split: Optional[str] = None) -> List[ActionSpec]:
    """The query classes (idle excluded), in library order; optionally those of one split."""
    return [a for a in ACTIONS.values() if a.split and (split is None or a.split == split)]


# the class definitions register themselves on import
from . import library_train, library_heldout  # noqa: E402,F401,I001  (train classes first)
