"""SynthReloc action classes of the train split (see actions.py for the pose conventions)."""
import math

from .actions import (L_EL, L_HIP, L_KNEE, L_SH, LEAN, LIFT, R_EL, R_HIP, R_KNEE, R_SH, TAU, XOFF,
                      bump, cycle, hop, neutral_pose, register, register_twins)


# ------------------------------------------------------------------------ train: twins
def _arm_circle(t, inst, sign):
    p = neutral_pose()
    p[R_SH] = sign * TAU * cycle(t, inst, 0.8)
    p[R_EL] = 0.0
    return p


register_twins("train", "arm_circle", "direction",
               ("arm_circle_cw", "image-right arm, straight, circles clockwise",
                lambda t, inst: _arm_circle(t, inst, 1.0)),
               ("arm_circle_ccw", "image-right arm, straight, circles anticlockwise",
                lambda t, inst: _arm_circle(t, inst, -1.0)))


def _wave(t, inst, freq):
    p = neutral_pose()
    p[R_SH] = 2.45
    p[R_EL] = 0.15 + 0.55 * inst.amp * math.sin(TAU * cycle(t, inst, freq))
    return p


register_twins("train", "wave", "speed",
               ("wave_slow", "image-right arm raised, forearm waves at ~1 Hz",
                lambda t, inst: _wave(t, inst, 1.0)),
               ("wave_fast", "image-right arm raised, forearm waves at ~2.5 Hz",
                lambda t, inst: _wave(t, inst, 2.5)))


def _jump_pose(x, inst):
    lift, crouch = hop(x)
    p = neutral_pose()
    p[LIFT] = 0.16 * inst.amp * lift
    p[[L_HIP, R_HIP]] += 0.25 * crouch + 0.1 * lift
    p[[L_KNEE, R_KNEE]] -= 0.55 * crouch
    p[[L_SH, R_SH]] += 0.5 * lift
    return p


def _jump(t, inst, pause: bool):
    if not pause:
        return _jump_pose(cycle(t, inst, 2.0), inst)
    x = cycle(t, inst, 2.0 / 3.0) * 3.0  # three 0.5-s beats: hop, hop, rest
    return _jump_pose(x % 1.0, inst) if x < 2.0 else _jump_pose(0.0, inst)


register_twins("train", "jump", "rhythm",
               ("jump_steady", "hops in place at a steady ~2 Hz",
                lambda t, inst: _jump(t, inst, False)),
               ("jump_pause", "hop, hop, pause (standing), repeated (same hops)",
                lambda t, inst: _jump(t, inst, True)))


def _walk(t, inst, direction):
    """Scissoring legs; the leg swinging towards ``direction`` bends its knee; body translates.

    walk_left(t) has exactly the joint angles of walk_right at another time (and is its mirror).
    """
    w = TAU * cycle(t, inst, 0.8)
    s, c = math.sin(w), math.cos(w)
    a = inst.amp
    p = neutral_pose()
    p[[R_HIP, L_HIP]] = 0.3 * a * s + 0.04
    p[R_KNEE] = 0.7 * max(0.0, direction * c)
    p[L_KNEE] = 0.7 * max(0.0, -direction * c)
    p[[R_SH, L_SH]] = -0.25 * a * s + 0.1
    p[[R_EL, L_EL]] = -0.2  # symmetric: nothing in a single frame tells the facing
    p[XOFF] = direction * 0.35 * inst.speed * t
    return p


register_twins("train", "walk", "direction",
               ("walk_left", "walks towards image-left", lambda t, inst: _walk(t, inst, -1.0)),
               ("walk_right", "walks towards image-right", lambda t, inst: _walk(t, inst, 1.0)),
               translates=True)


# ------------------------------------------------------------------------ train: singles
@register("squat", "train", "squat", "knees bend outwards, body lowers, arms forward-up")
def _squat(t, inst):
    b = bump(cycle(t, inst, 0.6)) * inst.amp
    p = neutral_pose()
    p[[L_HIP, R_HIP]] += 0.9 * b
    p[[L_KNEE, R_KNEE]] -= 1.7 * b
    p[[L_SH, R_SH]] += 1.2 * b
    return p


@register("kick", "train", "kick", "one leg kicks sideways high, arms out for balance")
def _kick(t, inst):
    x = cycle(t, inst, 0.9)
    k = bump(x / 0.6) if x < 0.6 else 0.0
    p = neutral_pose()
    hip, knee = (R_HIP, R_KNEE) if inst.side > 0 else (L_HIP, L_KNEE)
    p[hip] += 1.35 * inst.amp * k
    p[knee] -= 0.8 * bump(min(x / 0.3, 1.0) * 0.5) * k
    p[[L_SH, R_SH]] = 0.6
    return p


@register("jumping_jack", "train", "jumping_jack", "arms and legs spread and close with a hop")
def _jumping_jack(t, inst):
    x = cycle(t, inst, 1.1)
    b = bump(x)
    p = neutral_pose()
    p[[L_SH, R_SH]] = 0.15 + 2.6 * inst.amp * b
    p[[L_HIP, R_HIP]] = 0.05 + 0.38 * b
    p[LIFT] = 0.06 * abs(math.sin(TAU * x))
    return p


@register("side_bend", "train", "side_bend", "upper body leans left and right, arm over the head")
def _side_bend(t, inst):
    s = math.sin(TAU * cycle(t, inst, 0.5))
    p = neutral_pose()
    p[LEAN] = 0.45 * inst.amp * s
    p[L_SH] += 2.5 * max(0.0, s)
    p[R_SH] += 2.5 * max(0.0, -s)
    return p


@register("march", "train", "march", "knees lifted high, alternating legs, in place")
def _march(t, inst):
    x = cycle(t, inst, 0.9)
    p = neutral_pose()
    for hip, knee, ph in ((L_HIP, L_KNEE, 0.0), (R_HIP, R_KNEE, 0.5)):
        b = bump(((x + ph) % 1.0) / 0.5) if (x + ph) % 1.0 < 0.5 else 0.0
        p[hip] += 1.3 * inst.amp * b
        p[knee] -= 2.0 * b
    p[[L_SH, R_SH]] += 0.2
    return p


@register("hooray", "train", "hooray", "both arms up, hands shaking fast")
def _hooray(t, inst):
    p = neutral_pose()
    s = math.sin(TAU * cycle(t, inst, 3.0))
    p[[L_SH, R_SH]] = 2.7 + 0.1 * s
    p[[L_EL, R_EL]] = 0.3 * inst.amp * s
    return p


@register("bow", "train", "bow", "upper body bends down to one side, arms hanging")
def _bow(t, inst):
    b = bump(cycle(t, inst, 0.6)) * inst.amp * inst.side
    p = neutral_pose()
    p[LEAN] = 1.2 * b
    p[R_SH], p[L_SH] = 0.05 + 1.2 * b, 0.05 - 1.2 * b
    return p


@register("flap", "train", "flap", "both arms out sideways, flapping up and down")
def _flap(t, inst):
    s = math.sin(TAU * cycle(t, inst, 1.3))
    p = neutral_pose()
    p[[L_SH, R_SH]] = 1.57 + 0.5 * inst.amp * s
    p[[L_EL, R_EL]] = -0.3 * s
    return p
