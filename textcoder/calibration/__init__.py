"""Calibration: correcting a model's bias toward some labels (see README, "Calibration")."""

from __future__ import annotations

from .methods import (
    METHODS,
    BatchCalibrator,
    Calibrator,
    ContentFreeCalibrator,
    CrossFit,
    FitCalibrator,
    NoCalibration,
    PriorCalibrator,
    cross_fit,
    em_prevalence,
    fold_ids,
    make_calibrator,
)
from .table import (
    CONTENT_FREE_INPUTS,
    NEEDS_CONTENT_FREE,
    calibrate_table,
    gold_codes,
    gold_columns,
    prob_columns,
    uncalibrated,
)

__all__ = [
    "CONTENT_FREE_INPUTS",
    "METHODS",
    "NEEDS_CONTENT_FREE",
    "BatchCalibrator",
    "Calibrator",
    "ContentFreeCalibrator",
    "CrossFit",
    "FitCalibrator",
    "NoCalibration",
    "PriorCalibrator",
    "calibrate_table",
    "cross_fit",
    "em_prevalence",
    "fold_ids",
    "gold_codes",
    "gold_columns",
    "make_calibrator",
    "prob_columns",
    "uncalibrated",
]
