"""Percentile bootstrap intervals: resample texts with replacement, recompute, take quantiles.

Seeded, so the same coded file gives the same intervals every time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .metrics import Sample

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95


def bootstrap(
    sample: Sample,
    statistic: Callable[[Sample], dict[str, float]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = LEVEL,
) -> dict[str, tuple[float, float]]:
    """The `level` percentile interval of every value `statistic` returns, over `resamples`
    resamples of the texts. Resamples where a value is undefined (nan) are left out of it."""
    n = len(sample.gold)
    if n == 0 or resamples < 1:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        for key, value in statistic(sample.take(idx)).items():
            draws.setdefault(key, []).append(value)
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, tuple[float, float]] = {}
    for key, values in draws.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            out[key] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(arr, [tail, 100.0 - tail])
            out[key] = (float(lo), float(hi))
    return out
