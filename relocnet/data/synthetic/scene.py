"""What a SynthReloc video shows (plans: picklable dataclasses) and how one frame is rendered.

Everything is drawn on a "world" canvas (the 160x120 frame plus a margin), then the camera maps
the world to the frame with a per-frame affine transform (slow zoom, smooth pan, roll, shake).
Ground-truth boxes go through the same transform: an actor's box at a keyframe is the bounding
box of the frame pixels that its own drawing covers by at least half (amodal: parts hidden by
other actors or occluders count; clipped to the frame).
"""
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .actions import JOINTS, XOFF, Instance, pose_at
from .actors import ActorSprite, Appearance, texture

__all__ = ["FPS", "FRAME_W", "FRAME_H", "MARGIN", "WORLD_W", "WORLD_H", "Segment", "ActorPlan",
           "Camera", "Occluder", "Background", "VideoPlan", "Timeline", "SceneRenderer", "mask_box",
           "keyframe_index"]

FPS = 24
FRAME_W, FRAME_H = 160, 120
MARGIN = 10
WORLD_W, WORLD_H = FRAME_W + 2 * MARGIN, FRAME_H + 2 * MARGIN
BLEND = 0.25  # seconds over which a new action blends in from the previous pose


@dataclass(frozen=True)
class Segment:
    name: str  # an action name or IDLE
    start: int  # whole seconds of the video: the actor does `name` during [start, end)
    end: int
    inst: Instance


@dataclass(frozen=True)
class ActorPlan:
    app: Appearance
    ground_y: float  # world y of the feet (depth: larger = nearer = drawn later)
    x0: float  # world x of the pelvis at t = 0
    segments: Tuple[Segment, ...]  # contiguous, covering [0, length)


@dataclass(frozen=True)
class Camera:
    zoom: Tuple[float, float]  # zoom at the start and at the end (>= 1)
    pan: Tuple[float, float, float, float, float, float]  # amp x, amp y (px), freq (Hz), 3 phases
    roll: Tuple[float, float, float]  # amplitude (rad), freq (Hz), phase
    shake: float  # std of the per-frame jitter (px)
    seed: int

    def matrices(self, n: int) -> np.ndarray:
        """(n, 2, 3) world -> frame affine matrices for frames 0..n-1."""
        rng = np.random.default_rng(self.seed)
        shake = rng.normal(0.0, self.shake, (n, 2)) if self.shake > 0 else np.zeros((n, 2))
        ax, ay, f, p1, p2, p3 = self.pan
        ra, rf, rp = self.roll
        out = np.empty((n, 2, 3))
        for i in range(n):
            t = i / FPS
            s = i / max(n - 1, 1)
            z = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * (s * s * (3 - 2 * s))
            px = ax * math.sin(2 * math.pi * f * t + p1) + shake[i, 0]
            py = ay * math.sin(2 * math.pi * 0.7 * f * t + p2) + shake[i, 1]
            a = ra * math.sin(2 * math.pi * rf * t + p3 + rp)
            c, sn = z * math.cos(a), z * math.sin(a)
            cx, cy = WORLD_W / 2 + px, WORLD_H / 2 + py  # world point shown at the frame centre
            out[i] = [[c, -sn, FRAME_W / 2 - (c * cx - sn * cy)],
                      [sn, c, FRAME_H / 2 - (sn * cx + c * cy)]]
        return out


@dataclass(frozen=True)
class Occluder:
    rect: Tuple[float, float, float, float]  # world x1, y1, x2, y2 at t = 0
    texture: Tuple[str, Tuple[int, int, int], Tuple[int, int, int], float]
    velocity: float = 0.0  # px/s; moving occluders pass in front of everything
    active: Tuple[float, float] = (0.0, 1e9)  # seconds during which it is in the scene


@dataclass(frozen=True)
class Background:
    kind: str  # noise | stripes | checker | gradient
    colours: Tuple[Tuple[int, int, int], ...]  # 4 colours: wall pair, floor pair
    horizon: float  # world y where the floor starts
    velocity: Tuple[float, float]  # px/s of the scrolling wall texture
    clutter: Tuple[Tuple, ...]  # static shapes: ("line", x1, y1, x2, y2, t, rgb) | ("ellipse", ...)
    balls: Tuple[Tuple[float, float, float, float, float, Tuple[int, int, int]], ...]  # x, y, vx, vy, r, rgb
    gain: Tuple[float, float, float]  # brightness flicker: amplitude, freq (Hz), phase
    noise: float  # std of the sensor noise (grey levels)
    seed: int


@dataclass(frozen=True)
class VideoPlan:
    name: str  # path of the mp4 relative to the dataset's videos/ directory
    length: int  # seconds
    background: Background
    camera: Camera
    actors: Tuple[ActorPlan, ...]
    occluders: Tuple[Occluder, ...]


class Timeline:
    """Pose and position of one actor at any time (stateless; blends between actions)."""

    def __init__(self, plan: ActorPlan):
        self.plan = plan
        self.starts = np.array([s.start for s in plan.segments])
        self.offsets = [0.0]
        for s in plan.segments[:-1]:
            self.offsets.append(self.offsets[-1] + pose_at(s.name, s.end - s.start, s.inst)[XOFF])

    def state(self, t: float) -> Tuple[np.ndarray, float]:
        segs = self.plan.segments
        k = max(int(np.searchsorted(self.starts, t, side="right")) - 1, 0)
        seg = segs[k]
        tau = t - seg.start
        pose = pose_at(seg.name, tau, seg.inst)
        if k > 0 and tau < BLEND:
            prev = segs[k - 1]
            p0 = pose_at(prev.name, prev.end - prev.start, prev.inst)
            w = tau / BLEND
            w = w * w * (3 - 2 * w)
            d = pose - p0
            d[JOINTS] = np.angle(np.exp(1j * d[JOINTS]))
            mixed = p0 + w * d
            mixed[XOFF] = pose[XOFF]
            pose = mixed
        x = self.plan.x0 + self.plan.app.height * (self.offsets[k] + pose[XOFF])
        return pose, x

    def doing(self, t: float) -> str:
        k = max(int(np.searchsorted(self.starts, t, side="right")) - 1, 0)
        return self.plan.segments[k].name


def _periodic_noise(rng, h, w, scale) -> np.ndarray:
    f = np.fft.fft2(rng.normal(size=(h, w)))
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    v = np.real(np.fft.ifft2(f * np.exp(-(kx ** 2 + ky ** 2) * (scale ** 2))))
    return (v - v.min()) / (np.ptp(v) + 1e-9)


def _mix(v: np.ndarray, c1, c2) -> np.ndarray:
    c1, c2 = np.array(c1, np.float32), np.array(c2, np.float32)
    return (c1 + (c2 - c1) * v[..., None].astype(np.float32)).astype(np.uint8)


class SceneRenderer:
    """Renders the frames of a VideoPlan and measures its actors at keyframes."""

    def __init__(self, plan: VideoPlan):
        self.plan = plan
        self.n = plan.length * FPS
        bg = plan.background
        rng = np.random.default_rng(bg.seed)
        c = bg.colours
        if bg.kind == "noise":
            wall = _mix(_periodic_noise(rng, WORLD_H, WORLD_W, rng.uniform(15, 40)), c[0], c[1])
        elif bg.kind == "stripes":
            yy, xx = np.mgrid[0:WORLD_H, 0:WORLD_W]
            n, m = int(rng.integers(2, 9)), int(rng.integers(-5, 6))
            v = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * (n * xx / WORLD_W + m * yy / WORLD_H)))
            wall = _mix(v, c[0], c[1])
        elif bg.kind == "checker":
            tile = int(rng.choice([5, 10, 20]))
            yy, xx = np.mgrid[0:WORLD_H, 0:WORLD_W]
            wall = _mix(((xx // tile + yy // tile) % 2).astype(np.float32), c[0], c[1])
        else:  # gradient with faint noise
            v = np.linspace(0, 1, WORLD_H)[:, None] * np.ones((1, WORLD_W))
            v = 0.8 * v + 0.2 * _periodic_noise(rng, WORLD_H, WORLD_W, 8)
            wall = _mix(v, c[0], c[1])
        self.wall2 = np.tile(wall, (2, 2, 1))  # scrolling = a sliding window over 2 x 2 tiles
        self.floor = _mix(_periodic_noise(rng, WORLD_H, WORLD_W, rng.uniform(4, 12)), c[2], c[3])
        self.horizon = int(round(bg.horizon))
        self.noise_bank = []  # (positive part, negative part) of Gaussian sensor noise
        for _ in range(5):
            nz = np.clip(np.round(rng.normal(0, bg.noise, (FRAME_H, FRAME_W, 3))), -255, 255)
            self.noise_bank.append((np.maximum(nz, 0).astype(np.uint8), np.maximum(-nz, 0).astype(np.uint8)))
        self.sprites = [ActorSprite(a.app) for a in plan.actors]
        self.timelines = [Timeline(a) for a in plan.actors]
        self.occ_tex = [texture(o.texture, int(max(o.rect[2] - o.rect[0], o.rect[3] - o.rect[1])) + 2)
                        for o in plan.occluders]
        self.matrices = plan.camera.matrices(self.n)

    def _world(self, t: float) -> np.ndarray:
        bg = self.plan.background
        dx, dy = int(bg.velocity[0] * t) % WORLD_W, int(bg.velocity[1] * t) % WORLD_H
        world = np.empty((WORLD_H, WORLD_W, 3), np.uint8)
        hz = self.horizon
        world[:hz] = self.wall2[WORLD_H - dy:2 * WORLD_H - dy, WORLD_W - dx:2 * WORLD_W - dx][:hz]
        world[hz:] = self.floor[hz:]
        for shape in bg.clutter:
            if shape[0] == "line":
                cv2.line(world, shape[1:3], shape[3:5], shape[6], shape[5], cv2.LINE_AA)
            else:
                cv2.ellipse(world, shape[1:3], shape[3:5], shape[5], 0, 360, shape[6], -1, cv2.LINE_AA)
        for x, y, vx, vy, r, rgb in bg.balls:
            bx = abs((x + vx * t) % (2 * WORLD_W) - WORLD_W)  # bounce between the walls
            by = abs((y + vy * t) % (2 * WORLD_H) - WORLD_H)
            cv2.circle(world, (int(bx), int(by)), int(r), rgb, -1, cv2.LINE_AA)
        return world

    def _occluder(self, world, j: int, t: float) -> Optional[Tuple[int, int, int, int]]:
        o = self.plan.occluders[j]
        if not (o.active[0] <= t < o.active[1]):
            return None
        shift = o.velocity * (t - (o.active[0] if o.velocity else 0.0))
        x1, y1 = int(round(o.rect[0] + shift)), int(round(o.rect[1]))
        x2, y2 = int(round(o.rect[2] + shift)), int(round(o.rect[3]))
        cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, WORLD_W), min(y2, WORLD_H)
        if cx2 <= cx1 or cy2 <= cy1:
            return None
        tex = self.occ_tex[j]
        world[cy1:cy2, cx1:cx2] = tex[cy1 - y1:cy2 - y1, cx1 - x1:cx2 - x1]
        return cx1, cy1, cx2, cy2

    def render(self, i: int, measure: bool = False):
        """Frame i (uint8 HxWx3 RGB); with ``measure``, also [(box or None, visibility, action)]."""
        t = i / FPS  # frame i is shown from i / FPS: keyframe 24 s + 12 shows time s + 0.5
        world = self._world(t)
        items = [(a.ground_y, 0, k) for k, a in enumerate(self.plan.actors)]
        items += [(o.rect[3] if o.velocity == 0 else 1e9, 1, j)
                  for j, o in enumerate(self.plan.occluders)]
        drawn = []  # back to front: ("actor", k, (x0, y0, mask)) | ("occ", j, rect)
        for _, kind, k in sorted(items):
            if kind == 0:
                pose, x = self.timelines[k].state(t)
                drawn.append(("actor", k, self.sprites[k].draw(world, pose, x, self.plan.actors[k].ground_y)))
            else:
                drawn.append(("occ", k, self._occluder(world, k, t)))
        A = self.matrices[i]
        frame = cv2.warpAffine(world, A, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        bg = self.plan.background
        g = 1.0 + bg.gain[0] * math.sin(2 * math.pi * bg.gain[1] * t + bg.gain[2])
        pos, neg = self.noise_bank[i % len(self.noise_bank)]
        frame = cv2.subtract(cv2.add(cv2.convertScaleAbs(frame, alpha=g), pos), neg)
        if not measure:
            return frame
        return frame, self._measure(drawn, A, t)

    def frames(self, measure_at: Sequence[int], measured: Dict[int, list]) -> Iterator[np.ndarray]:
        """Yield every frame; store the measurements of the frames in ``measure_at`` in ``measured``."""
        keys = set(measure_at)
        for i in range(self.n):
            if i in keys:
                frame, measured[i] = self.render(i, measure=True)
                yield frame
            else:
                yield self.render(i)

    def render_actor_alone(self, k: int, i: int) -> np.ndarray:
        """Frame i showing only actor k on black (same camera; no background, occluders, noise)."""
        t = i / FPS
        world = np.zeros((WORLD_H, WORLD_W, 3), np.uint8)
        pose, x = self.timelines[k].state(t)
        self.sprites[k].draw(world, pose, x, self.plan.actors[k].ground_y)
        return cv2.warpAffine(world, self.matrices[i], (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def _measure(self, drawn, A, t):
        out: Dict[int, Tuple] = {}
        cover = np.zeros((WORLD_H, WORLD_W), bool)
        for kind, k, res in reversed(drawn):  # front to back
            if res is None:
                if kind == "actor":
                    out[k] = (None, 0.0, self.timelines[k].doing(t))
                continue
            if kind == "occ":
                x1, y1, x2, y2 = res
                cover[y1:y2, x1:x2] = True
                continue
            x0, y0, mask = res
            h, w = mask.shape
            region = cover[y0:y0 + h, x0:x0 + w]
            total = int(mask.sum())
            vis = float((mask & ~region).sum()) / max(total, 1)
            region |= mask
            out[k] = (mask_box(mask, x0, y0, A), round(vis, 3), self.timelines[k].doing(t))
        return [out[k] for k in range(len(self.plan.actors))]


def mask_box(mask: np.ndarray, x0: int, y0: int, A: np.ndarray) -> Optional[List[int]]:
    """Frame box [x1, y1, x2, y2] (pixel edges) of a world mask placed at (x0, y0), seen through A."""
    T = A.copy()
    T[:, 2] += A[:, 0] * x0 + A[:, 1] * y0
    warped = cv2.warpAffine(mask.astype(np.float32), T, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.nonzero(warped >= 0.5)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def keyframe_index(second: int) -> int:
    """Native frame shown at time second + 0.5 (the keyframe of sub-clip ``second``)."""
    return second * FPS + FPS // 2
