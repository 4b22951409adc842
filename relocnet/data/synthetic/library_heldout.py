"""SynthReloc action classes of the val and test splits (see actions.py for the pose conventions)."""
import math

from .actions import (L_EL, L_HIP, L_KNEE, L_SH, LEAN, R_EL, R_HIP, R_KNEE, R_SH, TAU, XOFF, bump,
                      cycle, neutral_pose, register, register_twins, smooth)


# ------------------------------------------------------------------------ val
def _raise(t, inst, first, second):
    """Four 0.6-s phases: ``first`` arm up, ``second`` up, ``first`` down, ``second`` down."""
    x = cycle(t, inst, 1.0 / 2.4) * 4.0
    p = neutral_pose()
    up = (smooth(x) - smooth(x - 2.0), smooth(x - 1.0) - smooth(x - 3.0))
    for sh, v in zip((first, second), up):
        p[sh] = 0.12 + 2.75 * inst.amp * v
    return p


register_twins("val", "raise_arms", "order",
               ("raise_left_first", "left arm up, right up, left down, right down",
                lambda t, inst: _raise(t, inst, L_SH, R_SH)),
               ("raise_right_first", "right arm up, left up, right down, left down",
                lambda t, inst: _raise(t, inst, R_SH, L_SH)))


def _curl(t, inst, up_fraction):
    x = cycle(t, inst, 1.0 / 1.4)
    v = x / up_fraction if x < up_fraction else 1.0 - (x - up_fraction) / (1.0 - up_fraction)
    v = smooth(v) * inst.amp
    p = neutral_pose()
    p[[L_SH, R_SH]] = 0.25
    p[[L_EL, R_EL]] = -0.1 - 2.4 * v
    return p


register_twins("val", "curl", "velocity_profile",
               ("curl_slow_up", "both forearms curl up slowly (75%) and drop fast (25%)",
                lambda t, inst: _curl(t, inst, 0.75)),
               ("curl_fast_up", "both forearms curl up fast (25%) and lower slowly (75%)",
                lambda t, inst: _curl(t, inst, 0.25)))


@register("lunge", "val", "lunge", "one leg steps wide with a bent knee, body low, then back")
def _lunge(t, inst):
    b = bump(cycle(t, inst, 0.55)) * inst.amp
    p = neutral_pose()
    hip, knee = (R_HIP, R_KNEE) if inst.side > 0 else (L_HIP, L_KNEE)
    p[hip] += 0.75 * b
    p[knee] -= 1.3 * b
    p[[L_SH, R_SH]] += 0.5 * b
    return p


@register("hug", "val", "hug", "both arms swing in and cross in front of the chest")
def _hug(t, inst):
    b = bump(cycle(t, inst, 0.8)) * inst.amp
    p = neutral_pose()
    p[[L_SH, R_SH]] = 0.9 - 2.0 * b
    p[[L_EL, R_EL]] = -0.3 - 0.9 * b
    return p


# ------------------------------------------------------------------------ test
def _punch(t, inst, pattern):
    """Beats of 0.4 s; each beat one arm punches out sideways (fast out, slower back)."""
    x = cycle(t, inst, 1.0 / (0.4 * len(pattern))) * len(pattern)
    beat = int(x) % len(pattern)
    y = x - int(x)
    v = smooth(y / 0.3) if y < 0.3 else 1.0 - smooth((y - 0.3) / 0.5)
    p = neutral_pose()
    p[[L_SH, R_SH]] = 0.35
    p[[L_EL, R_EL]] = -1.9
    sh, el = pattern[beat]
    p[sh] = 0.35 + 1.25 * inst.amp * v
    p[el] = -1.9 * (1.0 - v)
    return p


register_twins("test", "punch", "order",
               ("punch_llr", "punches sideways in the rhythm left, left, right",
                lambda t, inst: _punch(t, inst, ((L_SH, L_EL), (L_SH, L_EL), (R_SH, R_EL)))),
               ("punch_rrl", "punches sideways in the rhythm right, right, left",
                lambda t, inst: _punch(t, inst, ((R_SH, R_EL), (R_SH, R_EL), (L_SH, L_EL)))))


def _side_step(t, inst, direction):
    """Legs spread and close symmetrically; the feet stay planted while the body moves."""
    x = cycle(t, inst, 0.9)
    b = bump(x) * inst.amp
    p = neutral_pose()
    p[[L_HIP, R_HIP]] = 0.05 + 0.4 * b
    p[[L_SH, R_SH]] = 0.12 + 0.5 * b
    p[XOFF] = direction * 0.27 * inst.speed * t
    return p


register_twins("test", "side_step", "direction",
               ("side_step_left", "steps sideways towards image-left",
                lambda t, inst: _side_step(t, inst, -1.0)),
               ("side_step_right", "steps sideways towards image-right",
                lambda t, inst: _side_step(t, inst, 1.0)), translates=True)


@register("clap", "test", "clap", "hands meet in front of the chest, ~2 Hz")
def _clap(t, inst):
    b = bump(cycle(t, inst, 2.0))
    p = neutral_pose()
    p[[L_SH, R_SH]] = 0.7 - 1.0 * b * inst.amp
    p[[L_EL, R_EL]] = -0.6 - 0.9 * b
    return p


@register("balance", "test", "balance", "stands on one leg, other knee raised, arms out, wobbling")
def _balance(t, inst):
    s = math.sin(TAU * cycle(t, inst, 0.7))
    p = neutral_pose()
    hip, knee = (L_HIP, L_KNEE) if inst.side > 0 else (R_HIP, R_KNEE)
    p[hip] = 0.9 * inst.amp
    p[knee] = -1.9
    p[[L_SH, R_SH]] = 1.5 + 0.15 * s
    p[LEAN] = 0.08 * s
    return p
