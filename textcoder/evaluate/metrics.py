"""Agreement and calibration metrics on one coded sample, each computed by scikit-learn or
`krippendorff` (nothing re-implemented), so the figures match what reviewers recompute.

Labels are integer codes: 0..K-1 the categories in codebook order, K `invalid` (an answer
naming no category). Probabilities are an (n, K+1) array whose last column is the `other`
mass, so each row sums to 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

ECE_BINS = 15
Scale = Literal["nominal", "ordinal"]
IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

#: The headline metrics, in the order tables show them; each gets a bootstrap interval.
HEADLINE = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "cohen_kappa",
    "krippendorff_alpha",
    "brier",
    "ece",
    "invalid_share",
    "mean_other",
)


@dataclass(frozen=True)
class Sample:
    """What the metrics need: gold and predicted codes, probabilities, the category count."""

    gold: IntArray
    pred: IntArray
    probs: FloatArray
    n_categories: int
    scale: Scale = "nominal"
    has_probs: bool = True  # False for hard labels alone: `probs` is all nan

    def take(self, idx: IntArray) -> Sample:
        """The sample restricted to (or resampled at) the rows `idx`."""
        return Sample(
            self.gold[idx],
            self.pred[idx],
            self.probs[idx],
            self.n_categories,
            self.scale,
            self.has_probs,
        )

    @property
    def invalid(self) -> int:
        """The code of `invalid`."""
        return self.n_categories


def accuracy(s: Sample) -> float:
    return float(accuracy_score(s.gold, s.pred))


def f1(s: Sample, average: Literal["macro", "weighted"]) -> float:
    """Macro or support-weighted F1 over the codebook's categories (`invalid` is never right)."""
    return float(
        f1_score(
            s.gold, s.pred, labels=list(range(s.n_categories)), average=average, zero_division=0
        )
    )


def per_category(s: Sample) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
    """Precision, recall, F1 and support per category (codebook order)."""
    p, r, f, sup = precision_recall_fscore_support(
        s.gold, s.pred, labels=list(range(s.n_categories)), zero_division=0
    )
    return (
        np.asarray(p, dtype=float),
        np.asarray(r, dtype=float),
        np.asarray(f, dtype=float),
        np.asarray(sup, dtype=np.int64),
    )


def cohen_kappa(s: Sample) -> float:
    """Cohen's kappa, `invalid` counted as a category of its own (so always a disagreement)."""
    return float(cohen_kappa_score(s.gold, s.pred, labels=list(range(s.n_categories + 1))))


def krippendorff_alpha(s: Sample) -> float:
    """Krippendorff's alpha between gold and predicted codes.

    Nominal: `invalid` is one more value (a disagreement). Ordinal: categories are ranked in
    codebook order, and `invalid`, which has no rank, is a missing value.
    """
    data = np.vstack([s.gold, s.pred]).astype(float)
    if s.scale == "ordinal":
        data[data == s.invalid] = np.nan
        domain = list(range(s.n_categories))
    else:
        domain = list(range(s.n_categories + 1))
    return float(
        krippendorff.alpha(reliability_data=data, value_domain=domain, level_of_measurement=s.scale)
    )


def brier(s: Sample) -> float:
    """Multiclass Brier score (sum over categories and `other`, range 0 to 2; lower is better)."""
    return float(
        brier_score_loss(
            s.gold, s.probs, labels=list(range(s.n_categories + 1)), scale_by_half=False
        )
    )


def top_confidence(s: Sample) -> tuple[FloatArray, NDArray[np.bool_]]:
    """The top category's probability per text and whether that category is the gold one."""
    cats = s.probs[:, : s.n_categories]
    top = cats.argmax(axis=1)
    return cats.max(axis=1), top == s.gold


def reliability(s: Sample, n_bins: int = ECE_BINS) -> tuple[FloatArray, FloatArray, IntArray]:
    """The reliability curve (non-empty bins only): mean confidence, accuracy, texts per bin.

    The curve is scikit-learn's `calibration_curve` (uniform bins); the counts use its binning.
    """
    conf, correct = top_confidence(s)
    conf = np.clip(conf, 0.0, 1.0)
    acc, mean_conf = calibration_curve(correct.astype(int), conf, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    return (
        np.asarray(mean_conf, dtype=float),
        np.asarray(acc, dtype=float),
        counts[counts > 0].astype(np.int64),
    )


def ece(s: Sample, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: the count-weighted gap between confidence and accuracy over
    the reliability curve's bins (top-label ECE, Guo et al. 2017)."""
    mean_conf, acc, counts = reliability(s, n_bins)
    return float(np.sum(counts * np.abs(acc - mean_conf)) / counts.sum())


def invalid_share(s: Sample) -> float:
    return float(np.mean(s.pred == s.invalid))


def mean_other(s: Sample) -> float:
    return float(np.mean(s.probs[:, s.n_categories]))


def confusion(s: Sample, with_invalid: bool) -> IntArray:
    """Confusion matrix, rows gold and columns predicted, categories then (optionally) invalid."""
    k = s.n_categories + (1 if with_invalid else 0)
    return np.asarray(confusion_matrix(s.gold, s.pred, labels=list(range(k))), dtype=np.int64)


def headline(s: Sample) -> dict[str, float]:
    """Every headline metric at once; nan where a (re)sample leaves one undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {
            "accuracy": accuracy(s),
            "macro_f1": f1(s, "macro"),
            "weighted_f1": f1(s, "weighted"),
            "cohen_kappa": cohen_kappa(s),
            "krippendorff_alpha": _safe_alpha(s),
            "invalid_share": invalid_share(s),
        }
        nan = float("nan")
        out["brier"] = brier(s) if s.has_probs else nan
        out["ece"] = ece(s) if s.has_probs else nan
        out["mean_other"] = mean_other(s) if s.has_probs else nan
        p, r, f, _ = per_category(s)
    for i in range(s.n_categories):
        out[f"precision.{i}"] = float(p[i])
        out[f"recall.{i}"] = float(r[i])
        out[f"f1.{i}"] = float(f[i])
    return out


def _safe_alpha(s: Sample) -> float:
    """Alpha, or nan where it is undefined (e.g. every code in the resample is the same)."""
    try:
        return krippendorff_alpha(s)
    except (ValueError, ZeroDivisionError):
        return float("nan")
