"""Detectron2 evaluator for temporal re-localization (top-1 recall at tIoU thresholds)."""
import itertools
import os
from typing import Any, Dict, List, Mapping, Optional

from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .metrics import temporal_metrics
from .predictions import entries_from_output, write_predictions

__all__ = ["RelocEvaluator", "TemporalRelocEvaluator", "PREDICTIONS_FILE"]

PREDICTIONS_FILE = "reloc_predictions.json"  # written under output_dir, readable by tools/evaluate.py


class RelocEvaluator(DatasetEvaluator):
    """Collects per-pair predictions, gathers them across ranks and scores them on rank 0.

    Ground truth is ``DatasetCatalog.get(dataset_name)``: one record per pair, with ``pair_id``.
    ``evaluate`` returns ``{task: {metric: value}}`` on the main process and ``{}`` elsewhere.
    With ``output_dir``, the gathered predictions are also written there as a prediction file.
    """

    task: str = ""

    def __init__(self, dataset_name: str, *, output_dir: Optional[str] = None,
                 distributed: bool = True):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._predictions: Dict[str, List[Dict[str, Any]]] = {}

    def reset(self) -> None:
        self._predictions = {}

    def process(self, inputs: List[Mapping[str, Any]], outputs: List[Mapping[str, Any]]) -> None:
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        for inp, out in zip(inputs, outputs):
            if "pair_id" not in inp:
                raise KeyError(f"{type(self).__name__}: input record has no 'pair_id' "
                               f"(keys: {sorted(inp)})")
            self._predictions[str(inp["pair_id"])] = entries_from_output(out, self.task)

    def _ground_truth(self) -> List[Mapping[str, Any]]:
        records = DatasetCatalog.get(self._dataset_name)
        wrong = {r.get("task") for r in records} - {self.task}
        if wrong:
            raise ValueError(f"dataset {self._dataset_name!r} has {sorted(map(str, wrong))} "
                             f"records; {type(self).__name__} scores {self.task!r} pairs")
        return records

    def _metrics(self, gt: List[Mapping[str, Any]],
                 predictions: Mapping[str, List[Dict[str, Any]]]) -> Dict[str, float]:
        raise NotImplementedError

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        if self._distributed:
            comm.synchronize()
            parts = comm.gather(self._predictions, dst=0)
            if not comm.is_main_process():
                return {}
        else:
            parts = [self._predictions]
        predictions = dict(itertools.chain.from_iterable(p.items() for p in parts))
        gt = self._ground_truth()
        unknown = sorted(set(predictions) - {str(r["pair_id"]) for r in gt})
        if unknown:
            raise ValueError(f"predictions for pair ids not in dataset {self._dataset_name!r}: "
                             f"{unknown[:5]}")
        if self._output_dir:
            write_predictions(os.path.join(self._output_dir, PREDICTIONS_FILE), self.task,
                              predictions)
        return {self.task: self._metrics(gt, predictions)}


class TemporalRelocEvaluator(RelocEvaluator):
    """R@1 at tIoU > 0.5 ... 0.9, their mean (upstream's "Avg. mAP") and mean tIoU."""

    task = "temporal"

    def _metrics(self, gt, predictions):
        return temporal_metrics(gt, predictions)
