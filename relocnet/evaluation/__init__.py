"""Evaluators of the two re-localization benchmarks and their pure metric functions."""
from typing import Optional

from detectron2.data import MetadataCatalog

from .metrics import spatio_temporal_metrics, temporal_metrics
from .predictions import (PredictionFileError, entries_from_output, load_predictions,
                          validate_predictions, write_predictions)
from .spatio_temporal_evaluation import SpatioTemporalRelocEvaluator
from .temporal_evaluation import RelocEvaluator, TemporalRelocEvaluator

__all__ = ["RelocEvaluator", "TemporalRelocEvaluator", "SpatioTemporalRelocEvaluator",
           "build_reloc_evaluator", "temporal_metrics", "spatio_temporal_metrics",
           "PredictionFileError", "load_predictions", "validate_predictions",
           "write_predictions", "entries_from_output"]


def build_reloc_evaluator(dataset_name: str, output_dir: Optional[str] = None) -> RelocEvaluator:
    """The evaluator named by the dataset's ``evaluator_type`` metadata.

    "relocnet_temporal" -> TemporalRelocEvaluator; "relocnet_spatio_temporal" ->
    SpatioTemporalRelocEvaluator with ``fps_eval`` from the metadata (default 1).
    """
    meta = MetadataCatalog.get(dataset_name)
    kind = meta.get("evaluator_type", None)
    if kind == "relocnet_temporal":
        return TemporalRelocEvaluator(dataset_name, output_dir=output_dir)
    if kind == "relocnet_spatio_temporal":
        return SpatioTemporalRelocEvaluator(dataset_name, fps_eval=meta.get("fps_eval", 1),
                                            output_dir=output_dir)
    raise ValueError(f"dataset {dataset_name!r} has evaluator_type {kind!r}; expected "
                     "'relocnet_temporal' or 'relocnet_spatio_temporal'")
