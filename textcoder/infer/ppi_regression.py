"""PPI++ for regression coefficients (Angelopoulos, Duchi, Zrnic 2023): linear and logistic,
with the power-tuning weight lambda chosen as ppi_py's `ppi_ols_ci` / `ppi_logistic_ci`
choose it, and their sandwich variance. Valid for a simple random sample of coded rows.

`x` is the design over every row, `y` the human code's indicator (read where `r`), `f` the
model's probability; the coded rows are PPI's labelled set, the others its unlabelled one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from . import estimators as est


@dataclass(frozen=True)
class Stats:
    """Per-row gradients of the loss at a point and the inverse Hessian."""

    grads: est.Array  # labelled rows, with the human codes
    grads_hat: est.Array  # labelled rows, with the model's predictions
    grads_unl: est.Array  # unlabelled rows, with the model's predictions
    inv_hessian: est.Array


def _mean_fn(family: str, x: est.Array, theta: est.Array) -> est.Array:
    eta = x @ theta
    return np.asarray(expit(eta) if family == "binomial" else eta, dtype=np.float64)


def stats(
    family: str, theta: est.Array, x: est.Array, y: est.Array, f: est.Array, r: est.Mask, full: bool
) -> Stats:
    """The gradients and inverse Hessian at `theta`; `full` pools both sets in the Hessian
    (lambda not 0), as ppi_py's `use_unlabeled`."""
    mu = _mean_fn(family, x, theta)
    weight = mu * (1 - mu) if family == "binomial" else np.ones_like(mu)
    rows = np.ones(len(r), dtype=bool) if full else r
    hessian = (x[rows] * weight[rows, None]).T @ x[rows] / rows.sum()
    lab, unl = x[r], x[~r]
    return Stats(
        grads=lab * (mu[r] - y[r])[:, None],
        grads_hat=lab * (mu[r] - f[r])[:, None],
        grads_unl=unl * (mu[~r] - f[~r])[:, None],
        inv_hessian=np.linalg.inv(hessian),
    )


def tuned_lambda(s: Stats) -> float:
    """ppi_py's `_calc_lam_glm` (overall mode, clipped to [0, 1])."""
    n, n_unl = len(s.grads), len(s.grads_unl)
    gc = s.grads - s.grads.mean(0)
    hc = s.grads_hat - s.grads_hat.mean(0)
    cov = (gc.T @ hc + hc.T @ gc) / n
    var = np.atleast_2d(np.cov(np.concatenate([s.grads_hat, s.grads_unl]).T))
    v = s.inv_hessian
    num = np.trace(v @ cov @ v)
    den = 2 * (1 + n / n_unl) * np.trace(v @ var @ v)
    return float(np.clip(num / den, 0.0, 1.0))


def point(
    family: str, lam: float, x: est.Array, y: est.Array, f: est.Array, r: est.Mask
) -> est.Array:
    """The coefficients minimising the rectified loss at `lam`."""
    if family == "gaussian":
        imputed = np.linalg.lstsq(x[~r], lam * f[~r], rcond=None)[0]
        rectifier = np.linalg.lstsq(x[r], y[r] - lam * f[r], rcond=None)[0]
        return np.asarray(imputed + rectifier, dtype=np.float64)
    n, n_unl = int(r.sum()), int((~r).sum())
    curvature = np.where(r, (1 - lam) / n, lam / n_unl)  # each row's share of the Hessian
    theta = np.zeros(x.shape[1])
    for _ in range(100):
        mu = expit(x @ theta)
        grad = x[~r].T @ (lam / n_unl * (mu[~r] - f[~r])) + x[r].T @ (
            (mu[r] - y[r]) / n - lam / n * (mu[r] - f[r])
        )
        hw = curvature * mu * (1 - mu)
        step = np.linalg.solve((x * hw[:, None]).T @ x, grad)
        theta = theta - step
        if np.max(np.abs(step)) < 1e-12:
            break
    return theta


def ppi_regression(
    family: str, x: est.Array, y: est.Array, f: est.Array, r: est.Mask
) -> tuple[est.Array, est.Array, float]:
    """PPI++ coefficients, their covariance and the tuned lambda, step for step as ppi_py's
    `ppi_*_ci` with lam=None: a pilot at lambda 1, lambda tuned there, re-estimated, tuned
    again at that estimate, and the final estimate and sandwich at the second lambda."""
    theta = point(family, 1.0, x, y, f, r)
    lam = tuned_lambda(stats(family, theta, x, y, f, r, True))
    theta = point(family, lam, x, y, f, r)
    lam = tuned_lambda(stats(family, theta, x, y, f, r, True))
    theta = point(family, lam, x, y, f, r)
    s = stats(family, theta, x, y, f, r, lam != 0)
    n, n_unl, d = len(s.grads), len(s.grads_unl), x.shape[1]
    var_unl = np.cov((lam * s.grads_unl).T).reshape(d, d)
    var = np.cov((s.grads - lam * s.grads_hat).T).reshape(d, d)
    sigma = s.inv_hessian @ (n / n_unl * var_unl + var) @ s.inv_hessian
    return theta, sigma / n, lam
