"""A metric-learning score over the correlation of eq. 15, with an auxiliary classifier.

Not in the paper. A learned 1x1 embedding of both sides, L2-normalized per location, is correlated
(eq. 15 on unit vectors: cosines) and the match logit is an affine function of the soft maximum
``tau * (logsumexp(corr / tau) - log n)`` over the n locations and displacements. This is the score
of a metric-learning Siamese tracker: it only asks that the same action be *closer* than others,
which transfers to classes never seen in training, whereas the paper's ResNet stage
(:class:`CorrelationHead`) has to learn what a matching correlation map looks like from scratch.

Auxiliary classification (MODEL.RELOC.AUX_LOSS_WEIGHT > 0, AUX_CLASSES training classes): each
query descriptor, embedded and max-pooled over space, is classified among the training classes by
a cosine classifier (pairs carry ``"label_index"``, -1 = unlabelled, e.g. self-supervised or
mirrored pairs): ``"loss_aux_class"``. Learning "match / no match" from scratch gives the backbone
one bit per second; naming the action gives it a discriminative embedding, whose cosine similarity
then transfers to unseen classes (a few-shot learning practice).
"""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from fvcore.nn import weight_init
from torch import nn

from ..correlation import correlate_all_pairs
from .registry import RELOC_HEAD_REGISTRY, RelocHead

__all__ = ["SimilarityHead"]


@RELOC_HEAD_REGISTRY.register()
class SimilarityHead(RelocHead):
    """(P, C, S, S) reference ROIs x (D, C, S, S) query objects -> soft-maximum logits (P, D)."""

    @configurable
    def __init__(self, *, in_channels: int, embed_channels: int = 64, temperature: float = 0.1,
                 window: int = 7, aux_classes: int = 0, aux_weight: float = 0.0,
                 aux_scale: float = 10.0):
        """
        Args:
            in_channels: channels of the ROI features.
            embed_channels: channels of the learned embedding.
            temperature: tau of the soft maximum.
            window: W of the correlation (displacements form a W x W neighbourhood).
            aux_classes, aux_weight: the auxiliary classification loss (off when either is 0).
            aux_scale: the cosine classifier's logit scale.
        """
        super().__init__()
        if in_channels < 1 or embed_channels < 1 or temperature <= 0:
            raise ValueError("SimilarityHead needs in_channels >= 1, EMBED_CHANNELS >= 1 and "
                             "TEMPERATURE > 0")
        self.embed = Conv2d(in_channels, embed_channels, 1)
        weight_init.c2_msra_fill(self.embed)
        self.temperature, self.window = temperature, window
        # logit = scale * (soft maximum - offset); cosines lie in [-1, 1]
        self.sim_scale = nn.Parameter(torch.tensor(10.0))
        self.sim_offset = nn.Parameter(torch.tensor(0.5))
        self.aux_weight, self.aux_scale = aux_weight, aux_scale
        self.aux_classifier: Optional[nn.Linear] = None
        if aux_classes > 0 and aux_weight > 0:
            self.aux_classifier = nn.Linear(embed_channels, aux_classes, bias=False)

    @classmethod
    def from_config(cls, cfg, in_channels: int, box_reg: bool = False):
        if box_reg:
            raise ValueError("MODEL.RELOC.HEAD.NAME SimilarityHead scores regions; it has no box "
                             "regression (use it with the temporal model)")
        r = cfg.MODEL.RELOC
        return {"in_channels": in_channels, "embed_channels": r.HEAD.EMBED_CHANNELS,
                "temperature": r.HEAD.TEMPERATURE, "window": r.CORR.WINDOW,
                "aux_classes": r.AUX_CLASSES, "aux_weight": r.AUX_LOSS_WEIGHT}

    def similarity_logits(self, ref: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """(P, C, S, S), (D, C, S, S) -> (P, D) logits."""
        r = F.normalize(self.embed(ref), dim=1)
        q = F.normalize(self.embed(query), dim=1)
        t, window = self.temperature, self.window
        h, w = r.shape[2:]
        n = window * window * h * w  # entries of eq. 15 per pair, zero-padded ones included
        if window >= 2 * max(h, w) - 1:
            # the window reaches every location: eq. 15's entries are every (query location,
            # reference location) cosine once plus n - (hw)^2 zeros outside the maps, so one
            # GEMM per pair set gives the same soft maximum without gathering displacements
            cos = torch.einsum("dcl,pcm->pdlm", q.flatten(2), r.flatten(2)).flatten(2) / t
            pad = cos.new_full(cos.shape[:2] + (1,), math.log(n - (h * w) ** 2)) \
                if n > (h * w) ** 2 else cos[:, :, :0]
            lse = torch.logsumexp(torch.cat([cos, pad], dim=2), dim=2).flatten()
        else:
            corr = correlate_all_pairs(r, q, patch=0, window=window, normalize=False, impl="fast")
            lse = torch.logsumexp(corr.flatten(1) / t, dim=1)  # cosines, (P*D, W*W*S*S)
        # tau * (logsumexp - log n): between the mean (tau -> inf) and the max (tau -> 0) of the
        # cosines, so in [-1, 1] whatever the number of locations and displacements
        soft_max = t * (lse - math.log(n))
        return (self.sim_scale * (soft_max - self.sim_offset)).view(ref.shape[0], query.shape[0])

    def forward(self, ref: torch.Tensor, query: torch.Tensor
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if ref.shape[0] == 0:  # no region: an empty output that keeps the graph
            return ref.new_zeros((0, query.shape[0])) + ref.sum() * 0.0, None
        return self.similarity_logits(ref, query), None

    def extra_losses(self, pairs: List[Dict[str, Any]], queries: List[torch.Tensor]
                     ) -> Dict[str, torch.Tensor]:
        """``loss_aux_class``: cross-entropy of the cosine classifier over the labelled pairs'
        embedded, max-pooled query descriptors (nothing when the classifier is off)."""
        if self.aux_classifier is None:
            return {}
        feats, labels = [], []
        for pair, q in zip(pairs, queries):
            k = int(pair.get("label_index", -1))
            if k < 0:
                continue
            if k >= self.aux_classifier.out_features:
                raise ValueError(f"pair {pair.get('pair_id')!r}: label_index {k} >= "
                                 f"MODEL.RELOC.AUX_CLASSES ({self.aux_classifier.out_features})")
            feats.append(self.embed(q).amax(dim=(2, 3)))
            labels.append(torch.full((q.shape[0],), k, dtype=torch.long, device=q.device))
        if not feats:  # keep the graph: a zero that reaches the classifier
            return {"loss_aux_class": self.aux_classifier.weight.sum() * 0.0}
        f = F.normalize(torch.cat(feats), dim=1)
        w = F.normalize(self.aux_classifier.weight, dim=1)
        loss = F.cross_entropy(self.aux_scale * f @ w.t(), torch.cat(labels))
        return {"loss_aux_class": self.aux_weight * loss}
