"""Can a model's features recognize SynthReloc's training classes at all? (a linear probe)

A matching head can only generalize to unseen classes if its input features tell the training
classes apart. The check: clips of one actor doing a training class (``plan_clips``: each clip its
own actor, background and camera, the ``easy`` tier's sizes), rendered in memory as the decoder
would sample them; the model's per-second features (full frame: the actor's), mean- and
max-pooled over locations; a multinomial logistic regression trained on the seconds of 80 % of the
clips of each class and tested on the seconds of the others (held-out actors and scenes).
"""
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..data.synthetic.actions import IDLE
from ..data.synthetic.scene import FPS, SceneRenderer
from ..modeling.heads.registry import pool_locations
from .metrics import bootstrap_interval

__all__ = ["render_subclips", "pool_seconds", "probe_split", "probe_accuracy", "match_accuracy",
           "clip_counts", "clip_interval"]


def render_subclips(plan, fps: int, size) -> np.ndarray:
    """(T, fps, H, W, 3) uint8: every second of a plan sampled at ``fps`` (frame k of second t at
    t + (k + 1/2) / fps), resized with INTER_AREA, as the video decoder gives them."""
    renderer = SceneRenderer(plan)
    out = np.empty((plan.length, fps, size[0], size[1], 3), np.uint8)
    for t in range(plan.length):
        for k in range(fps):
            i = min(int(FPS * (t + (k + 0.5) / fps)), renderer.n - 1)
            out[t, k] = cv2.resize(renderer.render(i), (size[1], size[0]),
                                   interpolation=cv2.INTER_AREA)
    return out


def pool_seconds(rois: torch.Tensor) -> torch.Tensor:
    """(T, C, S, S) -> (T, 2C): mean and max over locations (a head's default
    ``second_features``)."""
    return pool_locations(rois)


def probe_split(labels: Sequence[str], groups: Sequence[int], *, keep: Sequence[str] = (),
                min_train: int = 5, test_fraction: float = 0.2, seed: int = 0):
    """The probes' split: boolean ``train`` and ``test`` masks (N,) and the class names kept.
    The seconds of a video (group) are never split; each label keeps a ``test_fraction`` of its
    videos for the test; idle and labels with fewer than ``min_train`` training samples are left
    out (``keep``: only these labels)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    mask = labels != IDLE
    if keep:
        mask &= np.isin(labels, list(keep))
    rng = np.random.default_rng(seed)
    test_videos = []  # per label, a share of the videos that show it
    for name in np.unique(labels[mask]):
        videos = np.unique(groups[mask & (labels == name)])
        k = max(1, int(round(len(videos) * test_fraction))) if len(videos) > 1 else 0
        test_videos += rng.choice(videos, k, replace=False).tolist()
    test = np.isin(groups, test_videos) & mask
    train = ~np.isin(groups, test_videos) & mask
    names, counts = np.unique(labels[train], return_counts=True)
    names = names[counts >= min_train]
    train &= np.isin(labels, names)
    test &= np.isin(labels, names)
    if not train.any() or not test.any():
        raise ValueError("probe: no class has enough training and test seconds")
    return train, test, names


def probe_accuracy(features: torch.Tensor, labels: Sequence[str], groups: Sequence[int], *,
                   keep: Sequence[str] = (), min_train: int = 5, test_fraction: float = 0.2,
                   seed: int = 0, iterations: int = 500, weight_decay: float = 1e-3
                   ) -> Dict[str, float]:
    """Held-out accuracy of a linear probe (``probe_split``'s split).

    Args:
        features: (N, D); labels, groups: N each.
    Returns: accuracy, chance (the most frequent test label's share), class and sample counts.
    """
    labels = np.asarray(labels)
    train, test, names = probe_split(labels, groups, keep=keep, min_train=min_train,
                                     test_fraction=test_fraction, seed=seed)
    index = {n: i for i, n in enumerate(names)}
    y = torch.tensor([index.get(n, -1) for n in labels])
    x = features.float()
    mean, std = x[train].mean(0), x[train].std(0) + 1e-4
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], len(names), requires_grad=True)
    b = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    tr = torch.from_numpy(train)
    for _ in range(iterations):
        loss = F.cross_entropy(x[tr] @ w + b, y[tr]) + weight_decay * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    te = torch.from_numpy(test)
    with torch.no_grad():
        pred = (x[te] @ w + b).argmax(1)
    acc = float((pred == y[te]).float().mean())
    chance = float(np.bincount(y[te].numpy()).max() / int(te.sum()))
    return {"accuracy": acc, "chance": chance, "classes": int(len(names)),
            "train_seconds": int(train.sum()), "test_seconds": int(test.sum())}


def clip_counts(correct: Sequence[bool], groups: Sequence[int]) -> List[Tuple[int, int]]:
    """Per clip (``groups``, in sorted order): (its seconds classified right, its seconds)."""
    correct, groups = np.asarray(correct, bool), np.asarray(groups)
    return [(int(correct[groups == g].sum()), int((groups == g).sum())) for g in np.unique(groups)]


def clip_interval(clip_sets: Sequence[Sequence[Tuple[int, int]]], *, samples: int = 1000,
                  level: float = 0.95, seed: int = 0) -> List[float]:
    """95 % bootstrap interval (percent; ``metrics.bootstrap_interval``) of the mean over
    ``clip_sets`` of an accuracy over test seconds, the clips resampled with replacement within
    their set (one set per check, e.g. per clip seed): the seconds of a clip share its actor and
    scene, so they are not independent draws.

    Args:
        clip_sets: per set, ``clip_counts`` of its test clips.
    """
    def accuracy(draw, _):
        return {"accuracy": 100.0 * sum(h for h, _ in draw) / sum(n for _, n in draw)}

    return list(bootstrap_interval([(clips, None) for clips in clip_sets], accuracy, "accuracy",
                                   samples=samples, level=level, seed=seed))


def match_accuracy(head, rois: Sequence[torch.Tensor], labels: Sequence[str],
                   groups: Sequence[int], *, seed: int = 0) -> Dict[str, float]:
    """Held-out accuracy of the matching head itself as a nearest-neighbour probe: every test
    second is compared by ``head(second, clip)`` (its match logit, the best over the clip's query
    objects) with each training clip as the query, and takes the class of the best-matching clip.
    The split is ``probe_split``'s (the linear probe's test seconds). No parameter is fitted: it
    asks whether the head's similarity, as used at test time, tells the training classes apart.

    Args:
        rois: per clip (group 0, 1, ...), its per-second features (T_i, C, S, S), in the order
            of ``labels`` / ``groups`` (one entry per second).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    train, test, names = probe_split(labels, groups, seed=seed)
    seconds = torch.cat(list(rois))
    test_seconds = seconds[torch.from_numpy(test)]
    clips = sorted(set(groups[train].tolist()))
    best = torch.full((len(test_seconds), len(names)), -float("inf"))
    index = {n: i for i, n in enumerate(names)}
    with torch.no_grad():
        for g in clips:
            logits = head(test_seconds, rois[g])[0].amax(dim=1)  # (test seconds,)
            c = index[labels[groups == g][0]]
            best[:, c] = torch.maximum(best[:, c], logits)
    truth = torch.tensor([index[n] for n in labels[test]])
    pred = best.argmax(dim=1)
    acc = float((pred == truth).float().mean())
    chance = float(np.bincount(truth.numpy()).max() / len(truth))
    confusions = {}  # per class: its accuracy and the class its seconds are taken for most
    for c, name in enumerate(names):
        mine = truth == c
        wrong = pred[mine & (pred != c)]
        confusions[str(name)] = {
            "accuracy": float((pred[mine] == c).float().mean()),
            "taken_for": str(names[int(wrong.mode().values)]) if len(wrong) else None}
    held_out = clip_counts((pred == truth).numpy(), groups[test])
    return {"accuracy": acc, "accuracy_95": clip_interval([held_out]), "clips": held_out,
            "chance": chance, "classes": int(len(names)), "train_clips": len(clips),
            "test_seconds": int(test.sum()), "test_clips": len(held_out),
            "per_class": confusions}
