"""Articulated stick-figure actors: appearance, skeleton geometry and rendering with cv2.

An actor is drawn facing the camera: torso (quad), head (with hair), two 2-segment arms and two
2-segment legs (thick lines), hands and shoes. Clothing is solid, striped, checked or chevroned;
every texture is mirror-symmetric about the body's midline, so a pose and its mirror image look
alike (the motion twins rely on that). Geometry is in units of the body height H (pixels).
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from .actions import (L_EL, L_HIP, L_KNEE, L_SH, LEAN, LIFT, R_EL, R_HIP, R_KNEE, R_SH)

__all__ = ["Appearance", "ActorSprite", "skeleton", "TEXTURE_KINDS", "random_colour", "texture"]

TEXTURE_KINDS = ("solid", "hstripes", "vstripes", "checks", "chevrons")
# label values in an actor's label map (0 = nothing)
SHIRT, SLEEVE, FOREARM, PANTS, SKIN, HAIR, SHOES = range(1, 8)
_SHIFT = 3  # cv2 sub-pixel bits
_ONE = 1 << _SHIFT


def random_colour(rng: np.random.Generator) -> Tuple[int, int, int]:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(60, 256), rng.integers(70, 256)]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


@dataclass(frozen=True)
class Appearance:
    """Everything that makes one actor look the way it does (picklable, sampled per actor)."""
    height: float  # body height H in pixels (feet to top of head, standing)
    shirt: Tuple[str, Tuple[int, int, int], Tuple[int, int, int], float]  # kind, c1, c2, period
    pants: Tuple[str, Tuple[int, int, int], Tuple[int, int, int], float]
    skin: Tuple[int, int, int]
    hair: Tuple[int, int, int]
    shoes: Tuple[int, int, int]
    long_sleeves: bool
    limbs: Tuple[float, float, float, float, float]  # upper arm, forearm, thigh, shin, torso (x H)
    widths: Tuple[float, float, float]  # arm, leg, shoulder half-width (x H)

    @staticmethod
    def sample(rng: np.random.Generator, height: float) -> "Appearance":
        def cloth():
            kind = str(rng.choice(TEXTURE_KINDS, p=[0.3, 0.2, 0.15, 0.2, 0.15]))
            return kind, random_colour(rng), random_colour(rng), float(rng.uniform(0.07, 0.16) * height)
        skins = [(241, 194, 160), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 58, 40)]
        skin = tuple(int(np.clip(c + rng.integers(-12, 13), 40, 255)) for c in skins[rng.integers(5)])
        j = lambda: float(rng.uniform(0.92, 1.08))  # noqa: E731
        return Appearance(
            height=float(height), shirt=cloth(), pants=cloth(), skin=skin,
            hair=tuple(int(v) for v in rng.integers(40, 140, 3)),
            shoes=tuple(int(v) for v in rng.integers(40, 90, 3)),
            long_sleeves=bool(rng.random() < 0.5),
            limbs=(0.17 * j(), 0.16 * j(), 0.25 * j(), 0.25 * j(), 0.30 * j()),
            widths=(0.065 * j(), 0.08 * j(), 0.085 * j()))


def texture(spec, size: int) -> np.ndarray:
    """A size x size RGB texture, mirror-symmetric about its centre column."""
    kind, c1, c2, period = spec
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ax, ay = np.abs(xx - c), yy - c
    period = max(period, 3.0)
    if kind == "solid":
        sel = np.zeros((size, size), bool)
    elif kind == "hstripes":
        sel = (ay // (period / 2)) % 2 == 0
    elif kind == "vstripes":
        sel = ((ax + period / 4) // (period / 2)) % 2 == 0
    elif kind == "checks":
        sel = (((ax + period / 4) // (period / 2)) + (ay // (period / 2))) % 2 == 0
    else:  # chevrons
        sel = ((ax + ay) // (period / 2)) % 2 == 0
    out = np.empty((size, size, 3), np.uint8)
    out[:] = np.array(c1, np.uint8)
    out[sel] = np.array(c2, np.uint8)
    return out


def _dir(theta: float, side: int) -> Tuple[float, float]:
    """Unit vector of a limb at angle ``theta`` (mirrored convention): side -1 = image-left."""
    return side * math.sin(theta), math.cos(theta)


def skeleton(app: Appearance, pose: np.ndarray, x: float, ground_y: float
             ) -> Dict[str, Tuple[float, float]]:
    """Joint positions (pixels) of an actor whose pelvis is at ``x`` and lowest foot on ground_y."""
    H = app.height
    ua, fa, th, sh, torso = (v * H for v in app.limbs)
    hip_w, sh_w = 0.05 * H, app.widths[2] * H
    pose = pose.tolist()
    legs = {}
    for side, hip_i, knee_i, name in ((-1, L_HIP, L_KNEE, "l"), (1, R_HIP, R_KNEE, "r")):
        d1, d2 = _dir(pose[hip_i], side), _dir(pose[hip_i] + pose[knee_i], side)
        kx, ky = side * hip_w + th * d1[0], th * d1[1]
        legs[name] = (side * hip_w, kx, ky, kx + sh * d2[0], ky + sh * d2[1])
    px = x
    py = ground_y - max(legs["l"][4], legs["r"][4]) - pose[LIFT] * H
    pts = {"pelvis": (px, py)}
    for name, (hx, kx, ky, fx, fy) in legs.items():
        pts[name + "_hip"] = (px + hx, py)
        pts[name + "_knee"] = (px + kx, py + ky)
        pts[name + "_foot"] = (px + fx, py + fy)
    c, s = math.cos(pose[LEAN]), math.sin(pose[LEAN])

    def at(ox, oy, vx, vy):  # origin + the torso-frame vector rotated by the lean
        return ox + c * vx - s * vy, oy + s * vx + c * vy

    nx, ny = at(px, py, 0.0, -torso)
    pts["neck"] = (nx, ny)
    pts["head"] = at(px, py, 0.0, -(torso + 0.115 * H))
    for side, sh_i, el_i, name in ((-1, L_SH, L_EL, "l"), (1, R_SH, R_EL, "r")):
        sx, sy = at(nx, ny, side * sh_w, 0.02 * H)
        d1, d2 = _dir(pose[sh_i], side), _dir(pose[sh_i] + pose[el_i], side)
        ex, ey = at(sx, sy, ua * d1[0], ua * d1[1])
        pts[name + "_shoulder"], pts[name + "_elbow"] = (sx, sy), (ex, ey)
        pts[name + "_hand"] = at(ex, ey, fa * d2[0], fa * d2[1])
    return pts


class ActorSprite:
    """Renders one actor (appearance fixed) into an RGB canvas; returns its pixel mask."""

    def __init__(self, app: Appearance):
        self.app = app
        H = app.height
        self.half = int(math.ceil(1.2 * H)) + 6
        self.size = size = 2 * self.half + 1
        skin = np.empty((size, size, 3), np.uint8)
        skin[:] = np.array(app.skin, np.uint8)
        shirt = texture(app.shirt, size)
        sleeve = (shirt.astype(np.float32) * 0.82).astype(np.uint8)
        flat = lambda c: np.broadcast_to(np.array(c, np.uint8), (size, size, 3))  # noqa: E731
        mats = [np.zeros((size, size, 3), np.uint8), shirt, sleeve,
                sleeve if app.long_sleeves else skin, texture(app.pants, size), skin,
                flat(app.hair), flat(app.shoes)]
        self.flat_materials = np.stack(mats).reshape(-1, 3)  # (8 * size * size, 3)
        self.label_offset = (np.arange(256) * size * size).astype(np.int32)  # label -> first row
        self.arm_t = max(2, int(round(app.widths[0] * H)))
        self.leg_t = max(2, int(round(app.widths[1] * H)))
        self.head_r = max(2.5, 0.075 * H)

    def labels(self, pts: Dict[str, Tuple[float, float]], canvas_hw: Tuple[int, int]
               ) -> Optional[Tuple[int, int, np.ndarray]]:
        """Label map of the actor clipped to the canvas: (x0, y0, labels) or None when outside."""
        xs = [p[0] for p in pts.values()]
        ys = [p[1] for p in pts.values()]
        pad = self.head_r + max(self.arm_t, self.leg_t) + 3
        x0, y0 = int(math.floor(min(xs) - pad)), int(math.floor(min(ys) - pad))
        x1, y1 = int(math.ceil(max(xs) + pad)), int(math.ceil(max(ys) + pad))
        ch, cw = canvas_hw
        if min(x1, cw) <= max(x0, 0) or min(y1, ch) <= max(y0, 0):
            return None
        lab = np.zeros((y1 - y0, x1 - x0), np.uint8)
        P = {k: (int((v[0] - x0) * _ONE + 0.5), int((v[1] - y0) * _ONE + 0.5)) for k, v in pts.items()}

        def line(a, b, label, t):
            cv2.line(lab, P[a], P[b], label, t, cv2.LINE_8, _SHIFT)

        def disc(a, r, label):
            cv2.circle(lab, P[a], int(round(r * _ONE)), label, -1, cv2.LINE_8, _SHIFT)

        H = self.app.height
        for s in ("l", "r"):
            line(s + "_hip", s + "_knee", PANTS, self.leg_t)
            line(s + "_knee", s + "_foot", PANTS, self.leg_t)
            disc(s + "_foot", 0.04 * H + 0.5, SHOES)
        # torso: a quad from the hips to the shoulders (shoulders wider)
        (px, py), (nx, ny) = pts["pelvis"], pts["neck"]
        lean = math.atan2(nx - px, py - ny)
        ax, ay = math.cos(lean), math.sin(lean)  # across the body
        hw, sw = 0.07 * H, (self.app.widths[2] + 0.01) * H
        quad = np.array([[px - hw * ax, py - hw * ay], [px + hw * ax, py + hw * ay],
                         [nx + sw * ax, ny + sw * ay], [nx - sw * ax, ny - sw * ay]]) - (x0, y0)
        cv2.fillConvexPoly(lab, np.round(quad * _ONE).astype(np.int32), SHIRT, cv2.LINE_8, _SHIFT)
        disc("head", self.head_r, SKIN)
        r = int(round(self.head_r * _ONE))
        cv2.ellipse(lab, P["head"], (r, r), math.degrees(lean), 180, 360, HAIR, -1, cv2.LINE_8, _SHIFT)
        for s in ("l", "r"):
            line(s + "_shoulder", s + "_elbow", SLEEVE, self.arm_t)
            line(s + "_elbow", s + "_hand", FOREARM, self.arm_t)
            disc(s + "_hand", 0.032 * H + 0.5, SKIN)
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cw), min(y1, ch)
        return cx0, cy0, lab[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]

    def draw(self, canvas: np.ndarray, pose: np.ndarray, x: float, ground_y: float
             ) -> Optional[Tuple[int, int, np.ndarray]]:
        """Draw the actor into ``canvas`` (HxWx3 uint8, in place); return (x0, y0, mask) or None."""
        pts = skeleton(self.app, pose, x, ground_y)
        res = self.labels(pts, canvas.shape[:2])
        if res is None:
            return None
        x0, y0, lab = res
        h, w = lab.shape
        S = self.size
        ty = np.arange(h, dtype=np.int32) + (y0 - int(round(pts["pelvis"][1])) + self.half)
        tx = np.arange(w, dtype=np.int32) + (x0 - int(round(pts["pelvis"][0])) + self.half)
        if ty[0] < 0 or tx[0] < 0 or ty[-1] >= S or tx[-1] >= S:
            ty, tx = np.clip(ty, 0, S - 1), np.clip(tx, 0, S - 1)
        idx = self.label_offset[lab] + (ty * S)[:, None] + tx[None, :]
        mask = lab > 0
        roi = canvas[y0:y0 + h, x0:x0 + w]
        cv2.copyTo(np.take(self.flat_materials, idx, axis=0), mask.view(np.uint8), roi)  # in place
        return x0, y0, mask
