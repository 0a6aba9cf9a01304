"""One coded sample against its gold codes: every metric with its bootstrap interval, as the
plain dict that `metrics.json` holds."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..output import INVALID
from . import metrics as m
from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, LEVEL, bootstrap
from .load import Coded


def evaluate(
    coded: Coded, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """The metrics of `coded`: headline metrics and per-category precision, recall and F1 each
    as {value, ci_low, ci_high}; support; the confusion matrix; the reliability curve."""
    s = coded.sample
    point = m.headline(s)
    ci = bootstrap(s, m.headline, resamples=resamples, seed=seed)

    def est(key: str) -> dict[str, float | None]:
        lo, hi = ci.get(key, (float("nan"), float("nan")))
        return {"value": _num(point[key]), "ci_low": _num(lo), "ci_high": _num(hi)}

    labels = coded.labels
    _, _, _, support = m.per_category(s)
    with_invalid = bool((s.pred == s.invalid).any())
    order = [*labels, INVALID] if with_invalid else list(labels)
    if s.has_probs:
        mean_conf, acc, counts = m.reliability(s)
    else:  # hard labels alone: no reliability curve
        mean_conf, acc, counts = np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    out: dict[str, Any] = {
        "name": coded.name,
        "file": coded.path,
        "variable": coded.variable.name,
        "gold_column": coded.gold_column,
        "calibration": coded.calibration,
        "labels": labels,
        "n": len(s.gold),
        "n_rows": coded.n_rows,
        "n_failed": coded.n_failed,
        "n_missing_gold": coded.n_missing_gold,
        "has_probabilities": s.has_probs,
        "notes": list(coded.notes),
    }
    for key in m.HEADLINE:
        out[key] = est(key)
    out["krippendorff_alpha"]["level"] = s.scale
    out["per_category"] = {
        lab: {
            "precision": est(f"precision.{i}"),
            "recall": est(f"recall.{i}"),
            "f1": est(f"f1.{i}"),
            "support": int(support[i]),
        }
        for i, lab in enumerate(labels)
    }
    out["confusion_matrix"] = {
        "labels": order,
        "rows": "gold",
        "columns": "predicted",
        "matrix": m.confusion(s, with_invalid).tolist(),
    }
    out["reliability"] = {
        "bins": m.ECE_BINS,
        "mean_confidence": mean_conf.tolist(),
        "accuracy": acc.tolist(),
        "count": counts.tolist(),
    }
    out["bootstrap"] = {"resamples": resamples, "seed": seed, "level": LEVEL, "unit": "text"}
    return out


def _num(x: float) -> float | None:
    """JSON has no nan: an undefined value is null."""
    return None if x != x else round(float(x), 6)
