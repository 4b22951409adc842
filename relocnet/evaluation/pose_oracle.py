"""The SynthReloc pose-track model with a perfect pose head: the ceiling of its matching rule.

``PoseTrack`` features are built from what the renderer knows instead of from pixels: per frame,
one location per actor with ``a = 1``, the actor's true pose vector and, as its pelvis offset, its
horizontal displacement in body heights (the offset changes by as much as a predicted one does at a
location the actor walks past). The model's head and decoder then score and decode them
exactly as they score predicted features. What the model misses beyond this ceiling is the pose
head's error; what the ceiling misses is the matching rule's (or the benchmark's: classes that
differ in nothing a second of poses and speed shows).
"""
from typing import Dict, Sequence

import numpy as np
import torch

from ..data.synthetic.scene import Timeline, VideoPlan
from ..engine.cached_training import pair_outputs
from ..engine.pose_training import pose_vector
from ..modeling.backbone.pose import HEAD_CHANNELS, POSE_CHANNELS

__all__ = ["true_pose_track", "oracle_outputs"]


def true_pose_track(plan: VideoPlan, fps: int, actors: Sequence[int] = ()) -> torch.Tensor:
    """(T, fps * HEAD_CHANNELS, 1, A) PoseTrack features of a planned video from its actors' true
    poses (frame k of second t at t + (k + 1/2) / fps, as the decoder samples); ``actors``: only
    these (default: all)."""
    timelines = [Timeline(a) for a in plan.actors]
    if actors:
        timelines = [timelines[k] for k in actors]
    out = np.zeros((plan.length, fps, HEAD_CHANNELS, len(timelines)), np.float32)
    for j, tl in enumerate(timelines):
        for t in range(plan.length):
            for k in range(fps):
                pose, x = tl.state(t + (k + 0.5) / fps)
                out[t, k, 0, j] = 1.0
                out[t, k, 1 : 1 + POSE_CHANNELS, j] = pose_vector(pose)
                out[t, k, 1 + POSE_CHANNELS, j] = (x - tl.plan.x0) / tl.plan.app.height
    return torch.from_numpy(out).reshape(plan.length, fps * HEAD_CHANNELS, 1, len(timelines))


@torch.no_grad()
def oracle_outputs(model, plans: Dict[str, VideoPlan], pairs: Sequence[dict]) -> Dict[str, dict]:
    """The model's temporal outputs for temporal pairs (pair-file entries) whose videos are the
    planned ones (keyed by file name), from true-pose features."""
    fps = model.head.frames
    cache: Dict[str, torch.Tensor] = {}

    def track(video: str, query: bool) -> torch.Tensor:
        name = video.replace("\\", "/").split("/")[-1]
        if (name, query) not in cache:
            cache[name, query] = true_pose_track(plans[name], fps, (0,) if query else ())
        return cache[name, query]

    model.eval()
    out = {}
    for p in pairs:
        ref = track(p["reference"]["video"], False)
        q = track(p["query"]["video"], True)[int(p["query"]["start"]) : int(p["query"]["end"])]
        out[str(p["pair_id"])] = pair_outputs(model, ref, q)
    return out
