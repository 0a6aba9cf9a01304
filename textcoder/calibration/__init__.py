"""Calibration: correcting a model's bias toward some labels (the docs' Calibration pages).

The method names are here and cheap to import (the command line's choices); the methods
themselves (numpy, scipy, pandas) load on first use (PEP 562), so `textcoder code --help`
does not import scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

#: every calibration method, by the name the command line and `Coder(calibrate=...)` take
METHODS = ("none", "batch", "content-free", "prior", "fit")
#: the methods that read the model's bias from content-free inputs coded in the same prompt
NEEDS_CONTENT_FREE = ("content-free", "prior")

if TYPE_CHECKING:
    from .methods import (
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
        calibrate_table,
        gold_codes,
        gold_columns,
        has_probabilities,
        prob_columns,
        uncalibrated,
    )

#: public name -> the module that defines it, imported when the name is first asked for
_LAZY = {
    "BatchCalibrator": ".methods",
    "Calibrator": ".methods",
    "ContentFreeCalibrator": ".methods",
    "CrossFit": ".methods",
    "FitCalibrator": ".methods",
    "NoCalibration": ".methods",
    "PriorCalibrator": ".methods",
    "cross_fit": ".methods",
    "em_prevalence": ".methods",
    "fold_ids": ".methods",
    "make_calibrator": ".methods",
    "CONTENT_FREE_INPUTS": ".table",
    "calibrate_table": ".table",
    "gold_codes": ".table",
    "gold_columns": ".table",
    "has_probabilities": ".table",
    "prob_columns": ".table",
    "uncalibrated": ".table",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


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
    "has_probabilities",
    "make_calibrator",
    "prob_columns",
    "uncalibrated",
]
