"""Estimators of a prevalence (the mean of a category's indicator) from model predictions
and human codes on part of the rows, each giving an estimate and its standard error.

Every function takes arrays whose last axis runs over the rows of one table (leading axes
batch several tables at once, as the coverage simulation does):
`f` the model's prediction (a probability, or 0/1 from its label), `y` the human code's
indicator (any value where not coded), `r` whether a row is human-coded, `pi` its inclusion
probability (read where `r` only). Formulas as in ppi_py (`ppi_mean_ci`) and R's dsl.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

Array = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

METHODS = ("model", "human", "ppi", "dsl")


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its standard error (arrays of the batch's shape)."""

    estimate: Array
    se: Array

    def interval(self, level: float) -> tuple[Array, Array]:
        """The normal (z) interval at `level`, as statsmodels' `_zconfint_generic` gives."""
        z = norm.ppf(0.5 + level / 2)
        return self.estimate - z * self.se, self.estimate + z * self.se


def _mean(x: Array, w: Array) -> Array:
    return np.asarray((x * w).sum(-1) / w.sum(-1), dtype=np.float64)


def _var0(x: Array, w: Array) -> Array:
    """The weighted variance with divisor sum(w) (numpy's ddof=0 for 0/1 weights)."""
    m = _mean(x, w)
    return _mean((x - m[..., None]) ** 2, w)


def model_only(f: Array) -> Estimate:
    """The model alone: the mean prediction, its interval as if the model were the truth."""
    n = f.shape[-1]
    return Estimate(f.mean(-1), f.std(-1) / np.sqrt(n))


def human_only(y: Array, r: Mask, pi: Array) -> Estimate:
    """The human codes alone, weighted by 1/pi (Hajek ratio; linearised variance)."""
    w = np.where(r, 1.0 / np.where(r, pi, 1.0), 0.0)
    est = _mean(y, w)
    resid = np.where(r, y - est[..., None], 0.0)
    se = np.sqrt((w**2 * resid**2).sum(-1)) / w.sum(-1)
    return Estimate(est, se)


def ppi_lambda(f: Array, y: Array, r: Mask) -> Array:
    """PPI++'s power-tuning weight, as ppi_py's `_calc_lam_glm` for a mean, clipped to [0, 1]:
    cov(y, f) on the coded rows / ((1 + n/N) var(f) over all rows, ddof 1)."""
    lab = r.astype(np.float64)
    n = lab.sum(-1)
    n_unl = f.shape[-1] - n
    cov = _mean(y * f, lab) - _mean(y, lab) * _mean(f, lab)
    var_all = f.var(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = cov / ((1 + n / n_unl) * var_all)
    clean = np.nan_to_num(lam, nan=0.0, posinf=1.0, neginf=0.0)
    return np.asarray(np.clip(clean, 0.0, 1.0), dtype=np.float64)


def ppi(f: Array, y: Array, r: Mask, lam: Array | None = None) -> Estimate:
    """PPI++ (Angelopoulos, Duchi, Zrnic 2023): lam * mean f over the uncoded rows plus the
    mean of y - lam * f over the coded ones. Valid for a simple random sample."""
    lam = ppi_lambda(f, y, r) if lam is None else np.asarray(lam, dtype=np.float64)
    lab = r.astype(np.float64)
    unl = 1.0 - lab
    n, n_unl = lab.sum(-1), unl.sum(-1)
    rect = y - lam[..., None] * f
    with np.errstate(divide="ignore", invalid="ignore"):  # no uncoded rows: undefined (nan)
        est = lam * _mean(f, unl) + _mean(rect, lab)
        var = lam**2 * _var0(f, unl) / n_unl + _var0(rect, lab) / n
    return Estimate(est, np.sqrt(var))


def ipw_lambda(f: Array, y: Array, r: Mask, pi: Array) -> Array:
    """The weight on the model that minimises the variance of PPI++'s inverse-probability-
    weighted form: the pseudo-outcome is a + lam * b with a = (r/pi) y and b = f (1 - r/pi),
    so lam = -cov(a, b) / var(b), clipped to [0, 1]."""
    w = np.where(r, 1.0 / np.where(r, pi, 1.0), 0.0)
    a, b = w * np.where(r, y, 0.0), f * (1.0 - w)
    cov = (a * b).mean(-1) - a.mean(-1) * b.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = -cov / b.var(-1)
    clean = np.nan_to_num(lam, nan=0.0, posinf=1.0, neginf=0.0)
    return np.asarray(np.clip(clean, 0.0, 1.0), dtype=np.float64)


def ppi_ipw(f: Array, y: Array, r: Mask, pi: Array, lam: Array | None = None) -> Estimate:
    """PPI++ for known unequal inclusion probabilities (Zrnic and Candes 2024, active
    inference): the mean over all rows of lam f + (r/pi)(y - lam f), sandwich SE. With
    lam = 1 it is DSL with the model's raw probability."""
    lam = ipw_lambda(f, y, r, pi) if lam is None else np.asarray(lam, dtype=np.float64)
    return dsl(lam[..., None] * f, y, r, pi)


def dsl_pseudo(f: Array, y: Array, r: Mask, pi: Array) -> Array:
    """DSL's design-adjusted pseudo-outcome f + (r / pi)(y - f) for every row."""
    return np.where(r, f + (y - f) / np.where(r, pi, 1.0), f)


def dsl(f: Array, y: Array, r: Mask, pi: Array) -> Estimate:
    """DSL (Egami et al. 2023): the mean of the pseudo-outcome over all rows, sandwich SE.
    Valid for any design with known inclusion probabilities."""
    pseudo = dsl_pseudo(f, y, r, pi)
    n = f.shape[-1]
    return Estimate(pseudo.mean(-1), pseudo.std(-1) / np.sqrt(n))


def effective_n(est: Estimate) -> Array:
    """How many human codes alone (a simple random sample) give the same standard error:
    p(1 - p) / se^2."""
    p = np.clip(est.estimate, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(p * (1 - p) / est.se**2, dtype=np.float64)
