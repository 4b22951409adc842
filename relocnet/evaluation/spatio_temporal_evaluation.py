"""Detectron2 evaluator for spatio-temporal re-localization (per-label VOC AP, then the mean)."""
from typing import Optional

from .metrics import check_fps_eval, spatio_temporal_metrics
from .temporal_evaluation import RelocEvaluator

__all__ = ["SpatioTemporalRelocEvaluator"]


class SpatioTemporalRelocEvaluator(RelocEvaluator):
    """AP@0.5 (and 0.3, 0.7) per label and their mean, the paper's spatio-temporal mAP.

    ``fps_eval``: frames evaluated per reference second (upstream AVA-Search: 3, the paper's
    model outputs 1); each second's detections and ground truth count that many times.
    """

    task = "spatio_temporal"

    def __init__(self, dataset_name: str, *, fps_eval: int = 1,
                 output_dir: Optional[str] = None, distributed: bool = True):
        super().__init__(dataset_name, output_dir=output_dir, distributed=distributed)
        self._fps_eval = check_fps_eval(fps_eval)

    def _metrics(self, gt, predictions):
        return spatio_temporal_metrics(gt, predictions, fps_eval=self._fps_eval)
