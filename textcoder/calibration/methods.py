"""Calibration methods on a probability matrix (rows = texts, columns = categories).

Pure numpy/scipy, deterministic. Each method is a small `Calibrator` with `fit`, `transform`
and `params` (what the manifest records). Rows passed in must be valid distributions over the
categories (finite, non-negative, summing to a positive number; they are renormalised).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from .._exceptions import UsageError
from . import METHODS

Matrix = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]

EPS = 1e-12


def as_probs(probs: npt.ArrayLike) -> Matrix:
    """A float (n, k) matrix with every row rescaled to sum to 1 (clipped at 0)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"expected an (n_rows, n_categories>=2) matrix, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be finite (drop failed rows before calibrating)")
    p = np.clip(p, 0.0, None)
    s = p.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("every row needs some probability on the categories")
    out: Matrix = p / s
    return out


def divide_out(probs: Matrix, bias: npt.NDArray[np.float64]) -> Matrix:
    """Divide each row by `bias` (one weight per category) and renormalise."""
    q = probs / np.clip(bias, EPS, None)[None, :]
    out: Matrix = q / q.sum(axis=1, keepdims=True)
    return out


def _vec(x: npt.NDArray[np.float64]) -> list[float]:
    return [round(float(v), 6) for v in x]


class Calibrator(ABC):
    """One calibration method: `fit` on the coded rows (and human codes if it needs them),
    then `transform` any rows; `params` is what was estimated, for the manifest."""

    method: ClassVar[str]

    def fit(self, probs: npt.ArrayLike, gold: Sequence[int] | Labels | None = None) -> Calibrator:
        """Estimate the method's parameters; returns self."""
        self._fit(as_probs(probs), None if gold is None else np.asarray(gold, dtype=np.int64))
        return self

    def transform(self, probs: npt.ArrayLike) -> Matrix:
        """Calibrated probabilities for `probs`, each row summing to 1."""
        return self._transform(as_probs(probs))

    def fit_transform(
        self, probs: npt.ArrayLike, gold: Sequence[int] | Labels | None = None
    ) -> Matrix:
        return self.fit(probs, gold).transform(probs)

    @abstractmethod
    def _fit(self, probs: Matrix, gold: Labels | None) -> None: ...

    @abstractmethod
    def _transform(self, probs: Matrix) -> Matrix: ...

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]: ...


class NoCalibration(Calibrator):
    """`none`: the model's probabilities as they are."""

    method = "none"

    def _fit(self, probs: Matrix, gold: Labels | None) -> None:
        return None

    def _transform(self, probs: Matrix) -> Matrix:
        return probs

    @property
    def params(self) -> dict[str, Any]:
        return {}


class BatchCalibrator(Calibrator):
    """`batch` (Zhou et al. 2023): the bias is estimated from the texts being coded and
    divided out, assuming the categories are balanced in them.

    Zhou et al.'s estimate is the mean predicted distribution (one step, `max_iter=1`). A
    confident model's mean is pulled toward its correct answers, so that step under-corrects;
    by default it is repeated until the mean calibrated distribution is balanced, i.e. the
    bias is the one whose removal meets the method's own assumption.
    """

    method = "batch"

    def __init__(self, max_iter: int = 1000, tol: float = 1e-8) -> None:
        self.max_iter = max(1, max_iter)
        self.tol = tol
        self.bias: npt.NDArray[np.float64] | None = None
        self.mean_bias: npt.NDArray[np.float64] | None = None
        self.iterations = 0

    def _fit(self, probs: Matrix, gold: Labels | None) -> None:
        k = probs.shape[1]
        self.mean_bias = probs.mean(axis=0)
        bias = self.mean_bias.copy()
        self.iterations = 1
        while self.iterations < self.max_iter:
            step = divide_out(probs, bias).mean(axis=0) * k
            bias = bias * step
            bias /= bias.sum()
            self.iterations += 1
            if np.max(np.abs(step - 1.0)) < self.tol:
                break
        self.bias = bias

    def _transform(self, probs: Matrix) -> Matrix:
        if self.bias is None:
            raise UsageError("batch calibration: call fit() before transform()")
        return divide_out(probs, self.bias)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "bias": None if self.bias is None else _vec(self.bias),
            "mean_distribution": None if self.mean_bias is None else _vec(self.mean_bias),
            "iterations": self.iterations,
        }


class ContentFreeCalibrator(Calibrator):
    """`content-free` (Zhao et al. 2021): the bias is the mean distribution the model gives to
    content-free inputs ("N/A", "[MASK]", ...) in the same prompt; it is divided out."""

    method = "content-free"

    def __init__(self, content_free: npt.ArrayLike) -> None:
        cf = as_probs(np.atleast_2d(np.asarray(content_free, dtype=np.float64)))
        self.bias = cf.mean(axis=0)
        self.n_inputs = int(cf.shape[0])

    def _fit(self, probs: Matrix, gold: Labels | None) -> None:
        if probs.shape[1] != self.bias.shape[0]:
            raise ValueError("content-free distributions and rows differ in categories")

    def _transform(self, probs: Matrix) -> Matrix:
        return divide_out(probs, self.bias)

    @property
    def params(self) -> dict[str, Any]:
        return {"bias": _vec(self.bias), "content_free_inputs": self.n_inputs}


def em_prevalence(
    probs: Matrix,
    model_prior: npt.NDArray[np.float64],
    max_iter: int = 1000,
    tol: float = 1e-8,
    pseudo_counts: float = 0.0,
) -> tuple[npt.NDArray[np.float64], int]:
    """Saerens et al. (2002): the class prevalence in the data by expectation-maximisation,
    for posteriors made under `model_prior`; with `pseudo_counts` > 0, the MAP estimate under
    a symmetric Dirichlet prior (that many texts' worth per category). Returns (prevalence,
    iterations)."""
    prior = np.clip(model_prior, EPS, None)
    prior = prior / prior.sum()
    prev = prior.copy()
    n, k = probs.shape
    for it in range(1, max_iter + 1):
        adjusted = divide_out(probs, prior / prev)
        new = (adjusted.sum(axis=0) + pseudo_counts) / (n + k * pseudo_counts)
        if np.max(np.abs(new - prev)) < tol:
            return new, it
        prev = new
    return prev, max_iter


def informativeness(probs: Matrix) -> float:
    """1 - the rows' mean entropy over log k: 0 when every row is uniform (the probabilities
    say nothing about the text), 1 when every row is certain."""
    k = probs.shape[1]
    p = np.clip(probs, EPS, 1.0)
    return float(1.0 - (-(p * np.log(p)).sum(axis=1)).mean() / np.log(k))


class PriorCalibrator(Calibrator):
    """`prior`: like `batch` without assuming balanced categories. The model's own prior is
    divided out, the categories' prevalence in the data is estimated by EM (Saerens et al.
    2002), and the rows are adjusted to it: p' ∝ p · prevalence / model_prior.

    The model's prior and the data's prevalence cannot both be read from the model's
    probabilities alone (only their ratio enters), so the model's prior comes from
    content-free inputs (as for `content-free`); without them it is taken as uniform.

    Plain EM (the maximum-likelihood prevalence) collapses when the probabilities barely
    depend on the text: any bias left after the content-free correction is amplified about
    1/informativeness times, so the estimate runs to a corner of the simplex (on the VADER
    tweets: neutral 0.0, positive 0.85) and every text gets the majority label. The
    prevalence is therefore a MAP estimate under a symmetric Dirichlet prior worth
    `n/k * (1 - informativeness)**2` texts per category: nothing for certain rows (plain EM),
    as much as the data for uniform ones. `shrink=False` gives plain EM.
    """

    method = "prior"

    def __init__(
        self,
        content_free: npt.ArrayLike | None = None,
        max_iter: int = 1000,
        tol: float = 1e-8,
        shrink: bool = True,
    ) -> None:
        self.shrink = shrink
        self.pseudo_counts = 0.0
        self.informativeness: float | None = None
        self.model_prior: npt.NDArray[np.float64] | None = None
        self.n_inputs = 0
        if content_free is not None:
            cf = as_probs(np.atleast_2d(np.asarray(content_free, dtype=np.float64)))
            self.model_prior = cf.mean(axis=0)
            self.n_inputs = int(cf.shape[0])
        self.max_iter = max_iter
        self.tol = tol
        self.prevalence: npt.NDArray[np.float64] | None = None
        self.iterations = 0

    def _fit(self, probs: Matrix, gold: Labels | None) -> None:
        k = probs.shape[1]
        if self.model_prior is None:
            self.model_prior = np.full(k, 1.0 / k)
        elif self.model_prior.shape[0] != k:
            raise ValueError("content-free distributions and rows differ in categories")
        n = probs.shape[0]
        self.informativeness = informativeness(divide_out(probs, self.model_prior))
        if self.shrink:
            self.pseudo_counts = n / k * (1.0 - self.informativeness) ** 2
        self.prevalence, self.iterations = em_prevalence(
            probs, self.model_prior, self.max_iter, self.tol, self.pseudo_counts
        )

    def _transform(self, probs: Matrix) -> Matrix:
        if self.prevalence is None or self.model_prior is None:
            raise UsageError("prior calibration: call fit() before transform()")
        return divide_out(probs, self.model_prior / np.clip(self.prevalence, EPS, None))

    @property
    def params(self) -> dict[str, Any]:
        return {
            "model_prior": None if self.model_prior is None else _vec(self.model_prior),
            "prevalence": None if self.prevalence is None else _vec(self.prevalence),
            "em_iterations": self.iterations,
            "content_free_inputs": self.n_inputs,
            "informativeness": None
            if self.informativeness is None
            else round(self.informativeness, 6),
            "dirichlet_pseudo_counts": round(self.pseudo_counts, 6),
        }


class FitCalibrator(Calibrator):
    """`fit`: a temperature and a per-category bias on the log-probabilities,
    softmax(log p / T + b) with b[0] = 0, fitted by maximum likelihood on rows with human
    codes (a small ridge keeps it finite when a category has no or few codes)."""

    method = "fit"

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge
        self.temperature = 1.0
        self.bias: npt.NDArray[np.float64] | None = None
        self.n_fitted = 0
        self.converged = True

    def _fit(self, probs: Matrix, gold: Labels | None) -> None:
        if gold is None or gold.shape[0] != probs.shape[0]:
            raise UsageError("calibration 'fit' needs one human code per fitted row")
        n, k = probs.shape
        if n < 2:
            raise UsageError("calibration 'fit' needs at least 2 rows with human codes")
        if gold.min() < 0 or gold.max() >= k:
            raise ValueError("human codes must be category indices 0..k-1")
        z = np.log(np.clip(probs, EPS, None))
        onehot = np.eye(k)[gold]
        lam = self.ridge

        def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
            s = np.exp(theta[0])
            b = np.concatenate([[0.0], theta[1:]])
            logits = s * z + b[None, :]
            logits -= logits.max(axis=1, keepdims=True)
            logq = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            nll = -float((onehot * logq).sum()) / n + lam * float(theta @ theta)
            g = (np.exp(logq) - onehot) / n
            grad = np.empty_like(theta)
            grad[0] = s * float((g * z).sum())
            grad[1:] = g.sum(axis=0)[1:]
            return nll, grad + 2 * lam * theta

        res = minimize(loss, np.zeros(k), jac=True, method="L-BFGS-B")
        self.temperature = float(np.exp(-res.x[0]))
        self.bias = np.concatenate([[0.0], res.x[1:]])
        self.n_fitted = n
        self.converged = bool(res.success)

    def _transform(self, probs: Matrix) -> Matrix:
        if self.bias is None:
            raise UsageError("fit calibration: call fit() before transform()")
        logits = np.log(np.clip(probs, EPS, None)) / self.temperature + self.bias[None, :]
        logits -= logits.max(axis=1, keepdims=True)
        q = np.exp(logits)
        out: Matrix = q / q.sum(axis=1, keepdims=True)
        return out

    @property
    def params(self) -> dict[str, Any]:
        return {
            "temperature": round(self.temperature, 6),
            "bias": None if self.bias is None else _vec(self.bias),
            "fitted_rows": self.n_fitted,
            "ridge": self.ridge,
            "converged": self.converged,
        }


def make_calibrator(method: str, content_free: npt.ArrayLike | None = None) -> Calibrator:
    """The calibrator for `method`; `content-free` needs the content-free distributions."""
    if method == "none":
        return NoCalibration()
    if method == "batch":
        return BatchCalibrator()
    if method == "content-free":
        if content_free is None:
            raise UsageError("calibration 'content-free' needs the content-free distributions")
        return ContentFreeCalibrator(content_free)
    if method == "prior":
        return PriorCalibrator(content_free)
    if method == "fit":
        return FitCalibrator()
    raise UsageError(f"unknown calibration {method!r}; one of {', '.join(METHODS)}")


def fold_ids(n: int, folds: int = 5, seed: int = 0) -> Labels:
    """A deterministic fold number (0..folds-1) per row: a seeded shuffle dealt round-robin."""
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.arange(n) % folds
    return ids


@dataclass(frozen=True)
class CrossFit:
    """Cross-fitted calibration: every row's probabilities from a fit that never saw it."""

    probs: Matrix
    folds: Labels
    params: list[dict[str, Any]]


def cross_fit(
    probs: npt.ArrayLike,
    gold: Sequence[int] | Labels,
    method: str = "fit",
    folds: int = 5,
    seed: int = 0,
    content_free: npt.ArrayLike | None = None,
) -> CrossFit:
    """Calibrate each fold's rows with a calibrator fitted on the other folds' rows only."""
    p = as_probs(probs)
    y = np.asarray(gold, dtype=np.int64)
    if y.shape[0] != p.shape[0]:
        raise ValueError("one human code per row is needed")
    ids = fold_ids(p.shape[0], folds, seed)
    out = np.empty_like(p)
    params = []
    for f in range(int(ids.max()) + 1):
        test = ids == f
        cal = make_calibrator(method, content_free).fit(p[~test], y[~test])
        out[test] = cal.transform(p[test])
        params.append(cal.params)
    return CrossFit(out, ids, params)
