"""Agreement among human coders: Krippendorff's alpha (nominal or ordinal as the codebook says)
with a bootstrap interval over texts, pairwise Cohen's kappa, and the majority code.

Codes are category labels; a multi-label variable's code is its `;`-joined categories, and
its agreement is measured per category (chosen or not).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import krippendorff
import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import cohen_kappa_score

from ..codebook import Variable

Codes = Mapping[str, Mapping[str, str]]  # coder -> text id -> code
Level = Literal["nominal", "ordinal"]
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A value with its 95% percentile bootstrap interval; None where undefined."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class Kappa:
    a: str
    b: str
    n: int
    kappa: float | None


@dataclass(frozen=True)
class Reliability:
    """Agreement among the coders on one variable (or one category of a multi-label one)."""

    name: str
    level: str
    n_texts: int  # texts coded by at least two coders
    alpha: Estimate
    kappas: tuple[Kappa, ...]


def split(code: str) -> list[str]:
    """A multi-label code's categories."""
    return [p.strip() for p in code.split(";") if p.strip()]


def code_matrix(
    var: Variable,
    codes: Codes,
    coders: Sequence[str],
    items: Sequence[str],
    category: str | None = None,
) -> NDArray[np.float64]:
    """Coders x texts: the category's position in the codebook (nan: not coded); with
    `category`, 1.0 where the coder chose it and 0.0 where not."""
    out = np.full((len(coders), len(items)), np.nan)
    for r, coder in enumerate(coders):
        mine = codes.get(coder, {})
        for c, item in enumerate(items):
            if item not in mine:
                continue
            if category is not None:
                out[r, c] = float(category in split(mine[item]))
            elif mine[item] in var.labels:
                out[r, c] = float(var.labels.index(mine[item]))
    return out


def alpha(data: NDArray[np.float64], n_values: int, level: Level) -> float | None:
    """Krippendorff's alpha, or None where it is undefined (e.g. a single value throughout)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = krippendorff.alpha(
                reliability_data=data,
                value_domain=list(range(n_values)),
                level_of_measurement=level,
            )
    except (ValueError, ZeroDivisionError):
        return None
    return None if value != value else float(value)


def alpha_estimate(
    data: NDArray[np.float64], n_values: int, level: Level, resamples: int, seed: int
) -> Estimate:
    """Alpha on the texts (columns) coded at least twice, with a percentile bootstrap
    interval from resampling those texts."""
    value = alpha(data, n_values, level)
    n = data.shape[1]
    if value is None or resamples < 1:
        return Estimate(value)
    rng = np.random.default_rng(seed)
    draws = [alpha(data[:, rng.integers(0, n, n)], n_values, level) for _ in range(resamples)]
    kept = np.asarray([d for d in draws if d is not None], dtype=float)
    if kept.size == 0:
        return Estimate(value)
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    lo, hi = np.percentile(kept, [tail, 100.0 - tail])
    return Estimate(value, float(lo), float(hi))


def kappa(x: NDArray[np.float64], y: NDArray[np.float64], n_values: int) -> Kappa:
    """Cohen's kappa on the texts both coders coded (names filled in by the caller)."""
    both = ~np.isnan(x) & ~np.isnan(y)
    n = int(both.sum())
    if n == 0:
        return Kappa("", "", 0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = cohen_kappa_score(
            x[both].astype(int), y[both].astype(int), labels=list(range(n_values))
        )
    return Kappa("", "", n, None if k != k else float(k))


def reliability(
    var: Variable,
    codes: Codes,
    coders: Sequence[str],
    items: Sequence[str],
    *,
    resamples: int,
    seed: int,
) -> list[Reliability]:
    """Alpha among the coders and every pair's kappa: one entry for a nominal or ordinal
    variable, one per category for a multi-label one."""
    parts: list[tuple[str, str | None, int, Level]] = (
        [(f"{var.name}: {lab}", lab, 2, "nominal") for lab in var.labels]
        if var.multi
        else [(var.name, None, len(var.labels), var.scale)]
    )
    out = []
    for name, category, n_values, level in parts:
        data = code_matrix(var, codes, coders, items, category)
        twice = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
        est = (
            alpha_estimate(twice, n_values, level, resamples, seed)
            if twice.size
            else Estimate(None)
        )
        kappas = []
        for (i, a), (j, b) in combinations(enumerate(coders), 2):
            k = kappa(data[i], data[j], n_values)
            kappas.append(Kappa(a, b, k.n, k.kappa))
        out.append(Reliability(name, level, int(twice.shape[1]), est, tuple(kappas)))
    return out


def majority(var: Variable, values: Sequence[str]) -> tuple[str, bool]:
    """The coders' majority code and whether they tied ('' on a tie). Multi-label: the
    categories more than half the coders chose; a tie where exactly half chose one."""
    if not values:
        return "", False
    if var.multi:
        counts = Counter(lab for v in values for lab in set(split(v)))
        if any(2 * counts[lab] == len(values) for lab in var.labels):
            return "", True
        return ";".join(lab for lab in var.labels if 2 * counts[lab] > len(values)), False
    top = Counter(values).most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        return "", True
    return top[0][0], False
