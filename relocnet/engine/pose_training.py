"""Training the pose head (relocnet/modeling/backbone/pose.py) on rendered SynthReloc frames.

Frames are rendered from the plans of a split (the training split: its classes only) together
with what the renderer knows about them: every actor's box and joint angles. Each frame is
resized to the model's input like a decoded video (cv2.INTER_AREA) and JPEG-compressed at a
random quality (the benchmark's videos are H.264). The frozen ImageNet trunk runs once per frame
(features cached in memory as float16); the head then trains for many epochs on the cache.

Targets on the stride-16 grid: a cell is an actor cell when its centre lies in an actor's box
(the front-most actor wins), and its targets are that actor's pose vector (``pose_vector``) and
the horizontal offset of its pelvis from the cell centre in body heights (both in frame pixels,
through the camera of that frame).
"""
import logging
import multiprocessing as mp
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..data.synthetic.actions import JOINT_NAMES, JOINTS, LIFT
from ..data.synthetic.scene import FPS, FRAME_H, FRAME_W, SceneRenderer, VideoPlan
from ..modeling.backbone.pose import (POSE_CHANNELS, PoseHead, mirror_pose_channels, pose_inputs,
                                      pose_targets_loss)

__all__ = ["PoseSamples", "pose_vector", "render_pose_samples",
           "with_mirror_images", "trunk_features", "train_pose_head", "evaluate_pose_head"]

logger = logging.getLogger(__name__)
LIFT_SCALE = 5.0  # lift is in body heights (0-0.2): scaled to the range of sin / cos


@dataclass
class PoseSamples:
    frames: np.ndarray  # (N, H, W, 3) uint8 model inputs
    actor: np.ndarray  # (N, h, w) float32 in {0, 1}
    pose: np.ndarray  # (N, POSE_CHANNELS + 1, h, w) float32: pose vector, pelvis offset


def pose_vector(pose: np.ndarray) -> np.ndarray:
    """An actor's pose (actions.py layout) -> (POSE_CHANNELS,) sin, cos of the joints, lift."""
    a = pose[JOINTS]
    return np.concatenate([np.sin(a), np.cos(a), [pose[LIFT] * LIFT_SCALE]]).astype(np.float32)


def _targets(renderer: SceneRenderer, measured, i: int, grid: Tuple[int, int]):
    h, w = grid
    cy = (np.arange(h) + 0.5) * FRAME_H / h
    cx = (np.arange(w) + 0.5) * FRAME_W / w
    A = renderer.matrices[i]
    scale = float(np.sqrt(abs(np.linalg.det(A[:, :2]))))
    actor = np.zeros((h, w), np.float32)
    pose = np.zeros((POSE_CHANNELS + 1, h, w), np.float32)
    order = sorted(range(len(measured)), key=lambda k: renderer.plan.actors[k].ground_y)
    for k in order:  # back to front: nearer actors overwrite
        box = measured[k][0]
        if box is None:
            continue
        inside = ((cy[:, None] >= box[1]) & (cy[:, None] <= box[3])
                  & (cx[None, :] >= box[0]) & (cx[None, :] <= box[2]))
        actor[inside] = 1.0
        plan = renderer.plan.actors[k]
        p, x = renderer.timelines[k].state(i / FPS)
        y = plan.ground_y - 0.5 * plan.app.height
        pelvis = A[0, 0] * x + A[0, 1] * y + A[0, 2]
        offset = (pelvis - cx[None, :]) / (plan.app.height * scale) * np.ones((h, 1))
        pose[:POSE_CHANNELS, inside] = pose_vector(p)[:, None]
        pose[POSE_CHANNELS][inside] = offset[inside]
    return actor, pose


def _render_plan_frames(job) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One plan's frames (``job``: plan, model input size, frame indices, JPEG qualities) with
    their targets."""
    plan, size, indices, qualities = job
    grid = (size[0] // 16, size[1] // 16)
    renderer = SceneRenderer(plan)
    frames, actors, poses = [], [], []
    for i, q in zip(indices, qualities):
        frame, measured = renderer.render(int(i), measure=True)
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        frames.append(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else frame)
        a, p = _targets(renderer, measured, int(i), grid)
        actors.append(a)
        poses.append(p)
    return np.stack(frames), np.stack(actors), np.stack(poses)


def render_pose_samples(plans: Sequence[VideoPlan], size: Tuple[int, int], per_second: int,
                        seed: int, workers: int = 1) -> PoseSamples:
    """``per_second`` random frames of every second of every plan, with their targets. The frames
    and JPEG qualities are drawn first, in plan order, so ``workers`` processes (rendering plans
    in parallel) give exactly the samples one process gives."""
    rng = np.random.default_rng(seed)
    jobs = []
    for plan in plans:
        indices, qualities = [], []
        for s in range(plan.length):
            for i in rng.choice(FPS, size=per_second, replace=False) + s * FPS:
                indices.append(int(i))
                qualities.append(int(rng.integers(30, 90)))
        jobs.append((plan, tuple(size), indices, qualities))
    if workers > 1:
        ctx = mp.get_context("spawn")  # no forked torch threads
        with ctx.Pool(workers) as pool:
            parts = pool.map(_render_plan_frames, jobs, chunksize=max(1, len(jobs) // (8 * workers)))
    else:
        parts = [_render_plan_frames(job) for job in jobs]
    return PoseSamples(*(np.concatenate([p[k] for p in parts]) for k in range(3)))


def with_mirror_images(samples: PoseSamples) -> PoseSamples:
    """The samples and their mirror images (frames flipped left-right, targets flipped and their
    left and right limbs, lean and pelvis offset mirrored): the head sees every pose both ways,
    as the mirror test of ``PoseMapBackbone`` does."""
    width, cells = samples.frames.shape[2], samples.actor.shape[2]
    if width != 16 * cells:
        raise ValueError(f"mirror images need a frame width that is a multiple of 16 (the grid "
                         f"flips onto itself), got {width} for {cells} cells")
    pose = mirror_pose_channels(torch.from_numpy(samples.pose)).flip(-1).numpy()
    return PoseSamples(np.concatenate([samples.frames, samples.frames[:, :, ::-1]]),
                       np.concatenate([samples.actor, samples.actor[:, :, ::-1]]),
                       np.concatenate([samples.pose, pose]))


@torch.no_grad()
def trunk_features(trunk, frames: np.ndarray, pixel_mean, pixel_std, chunk: int = 64,
                   device: str = "cpu") -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, C, h, w) float16 PoseHead inputs from the frozen trunk, computed
    and kept on ``device`` (the trunk is moved there), written into one preallocated tensor (no
    second copy: 127,616 frames' features are 11 GB)."""
    if len(frames) == 0:
        raise ValueError("trunk_features: no frames (the plans rendered none)")
    trunk.to(device)
    mean = torch.tensor(pixel_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(pixel_std, device=device).view(1, 3, 1, 1)
    out = None
    for s in range(0, len(frames), chunk):
        x = torch.from_numpy(np.ascontiguousarray(frames[s : s + chunk])).to(device)
        f = pose_inputs(trunk((x.permute(0, 3, 1, 2).float() - mean) / std)).half()
        if out is None:
            out = torch.empty((len(frames), *f.shape[1:]), dtype=f.dtype, device=device)
        out[s : s + len(f)] = f
    return out


def train_pose_head(head: PoseHead, feats: torch.Tensor, samples: PoseSamples, *,
                    iterations: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                    precision: str = "fp32", log_every: int = 200) -> Dict[str, float]:
    """Adam with a cosine schedule on the cached features (the head trains on their device);
    returns first / last mean losses. ``precision="bf16"``: the head's forward and backward run
    in bfloat16 autocast (weights, optimizer and loss stay float32; 2.5x faster on CPUs with
    AMX / AVX512-BF16)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision {precision!r}: expected 'fp32' or 'bf16'")
    gen = torch.Generator().manual_seed(seed)
    head.to(feats.device)
    actor = torch.from_numpy(samples.actor).to(feats.device)
    pose = torch.from_numpy(samples.pose).to(feats.device)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    head.train()
    history: List[float] = []
    for it in range(iterations):
        idx = torch.randint(len(feats), (batch_size,), generator=gen).to(feats.device)
        x = feats[idx].float()
        if torch.rand(1, generator=gen).item() < 0.5:  # features of a darker / brighter frame
            x = x * (1.0 + 0.1 * torch.randn(1, generator=gen).item())
        with torch.autocast(feats.device.type, dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            out = head(x)
        losses = pose_targets_loss(out.float(), actor[idx], pose[idx])
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
        if (it + 1) % log_every == 0:
            logger.info("iter %d: loss %.4f", it + 1, np.mean(history[-log_every:]))
    head.eval()
    n = min(log_every, len(history))
    return {"loss_first": float(np.mean(history[:n])), "loss_last": float(np.mean(history[-n:]))}


@torch.no_grad()
def evaluate_pose_head(head: PoseHead, feats: torch.Tensor, samples: PoseSamples
                       ) -> Dict[str, object]:
    """Actor-cell accuracy and the median joint-angle error (degrees) on the actor cells, over all
    joints and per joint."""
    head.eval()
    out = torch.cat([head(feats[s : s + 256].float()).cpu() for s in range(0, len(feats), 256)])
    actor = torch.from_numpy(samples.actor) > 0.5
    acc = float(((out[:, 0] > 0) == actor).float().mean())
    pred, target = out[:, 1:], torch.from_numpy(samples.pose)
    n = (POSE_CHANNELS - 1) // 2
    ang = torch.atan2(pred[:, :n], pred[:, n : 2 * n])
    ref = torch.atan2(target[:, :n], target[:, n : 2 * n])
    err = torch.rad2deg(torch.remainder(ang - ref + np.pi, 2 * np.pi) - np.pi).abs()
    err = err.permute(0, 2, 3, 1)[actor]  # (cells, joints)
    offset = (pred[:, POSE_CHANNELS] - target[:, POSE_CHANNELS])[actor].abs()
    return {"actor_accuracy": acc, "median_joint_error_deg": float(err.median()),
            "joint_error_deg_p90": float(err.flatten().quantile(0.9)) if err.numel() else 0.0,
            "median_error_deg_per_joint": {name: float(err[:, j].median()) if err.numel() else 0.0
                                           for j, name in enumerate(JOINT_NAMES)},
            "median_offset_error": float(offset.median()) if offset.numel() else 0.0}
