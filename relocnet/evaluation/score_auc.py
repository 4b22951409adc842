"""Per-second ROC AUC of a temporal model's match scores: a diagnostic below the segment metrics.

Does the model score matching reference seconds above non-matching ones at all (0.5 = chance),
whatever the decoder's threshold makes of it? ``tools/score_auc.py`` reports it on a registered
dataset; ``tools/overfit_pairs.py`` tracks it while overfitting a few pairs.
"""
from typing import Any, Dict, Iterable, Iterator, Tuple

import numpy as np
import torch

__all__ = ["roc_auc", "second_scores", "score_auc_summary"]


def roc_auc(scores, labels) -> float:
    """Mann-Whitney AUC (ties count half); nan without both classes."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels) > 0
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def second_scores(model, pairs: Iterable[Dict[str, Any]]
                  ) -> Iterator[Tuple[Dict[str, Any], np.ndarray, np.ndarray]]:
    """Yield (pair, match scores, match labels) per pair, the scores from ``model`` (in eval
    mode) on the whole reference."""
    with torch.no_grad():
        for pair in pairs:
            yield pair, model([pair])[0]["second_scores"].numpy(), pair["match"].numpy()


def score_auc_summary(model, pairs: Iterable[Dict[str, Any]]) -> Dict[str, float]:
    """``auc_pooled`` (all seconds), ``auc_mean_per_pair`` (pairs with both kinds of seconds),
    ``num_pairs`` and ``auc_pooled/LABEL`` per pair label."""
    all_s, all_y, per_pair, by_label, n = [], [], [], {}, 0
    for pair, scores, labels in second_scores(model, pairs):
        n += 1
        all_s += list(scores)
        all_y += list(labels)
        s, y = by_label.setdefault(pair.get("label", ""), ([], []))
        s += list(scores)
        y += list(labels)
        auc = roc_auc(scores, labels)
        if auc == auc:
            per_pair.append(auc)
    out = {"num_pairs": n, "auc_pooled": roc_auc(all_s, all_y),
           "auc_mean_per_pair": float(np.mean(per_pair)) if per_pair else float("nan")}
    out.update({f"auc_pooled/{k}": roc_auc(*v) for k, v in sorted(by_label.items())})
    return out
