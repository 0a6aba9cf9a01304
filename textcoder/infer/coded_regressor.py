"""A coded variable as a regressor: `shares ~ sentiment + year`, the outcome an observed
column, the coded variable's categories as indicators (the first category the reference).

DSL (Egami et al. 2023; R's dsl with a predicted regressor) solves the design-adjusted
moment sum_i [m_i(xhat) + (r_i / pi_i)(m_i(x) - m_i(xhat))] = 0, where x holds the human
code's indicators (known on coded rows) and xhat the prediction of them, with the sandwich
variance. The model alone puts its probabilities in place of the indicators. PPI++ needs
every regressor observed on every row, so it is not offered here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from .._exceptions import DataError, UsageError
from . import estimators as est
from .table import Prepared

#: how an indicator column of the coded variable is named in the output: `sentiment[neutral]`
INDICATOR = "{variable}[{label}]"


def indicator_names(prep: Prepared) -> list[str]:
    """The indicator columns of every category but the first (the reference)."""
    v = prep.variable.name
    return [INDICATOR.format(variable=v, label=lab) for lab in prep.labels[1:]]


def substitute(rhs: str, prep: Prepared) -> str:
    """The right-hand side with the coded variable's name replaced by its indicators."""
    v = prep.variable.name
    terms = " + ".join(f'Q("{name}")' for name in indicator_names(prep))
    out, k = re.subn(rf"(?<![\w.\"']){re.escape(v)}(?![\w\"'])", f"({terms})", rhs)
    if k == 0:
        raise UsageError(
            f"--formula: the outcome is a column, so the coded variable {v!r} must be a "
            "regressor; or put one of its categories left of ~"
        )
    return out


def frames(prep: Prepared, values: est.Array) -> pd.DataFrame:
    """The table with the indicator columns holding `values` (rows, categories)."""
    from .formula import numeric_columns

    data = numeric_columns(prep.frame)
    for j, name in enumerate(indicator_names(prep), start=1):
        data[name] = values[:, j]
    return data


def matrices(
    prep: Prepared, lhs: str, rhs: str, formula: str, predicted: est.Array
) -> tuple[est.Array, est.Array, est.Array, est.Mask, list[str]]:
    """The outcome, the design with the human indicators, the design with `predicted`, the
    rows used, and the term names."""
    import patsy

    from .formula import check_design, formula_error

    if prep.variable.multi:
        raise UsageError("--formula: a multi-label variable cannot be a regressor")
    if lhs not in prep.frame.columns:
        raise UsageError(f"--formula {formula!r}: no column {lhs!r} in the table")
    spec = f"Q({lhs!r}) ~ {substitute(rhs, prep)}"
    try:
        y, x = patsy.dmatrices(
            spec, frames(prep, prep.y), NA_action="drop", return_type="dataframe"
        )
        _, xhat = patsy.dmatrices(
            spec, frames(prep, predicted), NA_action="drop", return_type="dataframe"
        )
    except patsy.PatsyError as exc:
        raise formula_error(exc, formula) from None
    names = [re.sub(r'Q\("(.*?)"\)', r"\1", str(c)) for c in x.columns]
    check_design(xhat.to_numpy(dtype=float), names, formula)
    rows = np.zeros(len(prep.frame), dtype=bool)
    rows[x.index.to_numpy()] = True
    outcome = y.to_numpy(dtype=float)[:, 0]
    if not np.isfinite(outcome).all():
        raise DataError(f"--formula {formula!r}: the outcome {lhs!r} must be numeric")
    return outcome, x.to_numpy(dtype=float), xhat.to_numpy(dtype=float), rows, names


def dsl_solve(
    family: str, y: est.Array, x: est.Array, xhat: est.Array, w: est.Array
) -> tuple[est.Array, est.Array]:
    """The coefficients solving the design-adjusted moments (`w` = r / pi, 0 where not
    coded) by Newton's method, and their sandwich covariance J^-1 (sum m m') J^-1."""
    beta: est.Array = np.asarray(np.linalg.lstsq(xhat, y, rcond=None)[0], dtype=np.float64)
    for _ in range(100):
        m, jac = _moments(family, beta, y, x, xhat, w)
        step = np.linalg.solve(jac, m.sum(0))
        beta = np.asarray(beta + step, dtype=np.float64)
        if np.max(np.abs(step)) < 1e-10:
            break
    m, jac = _moments(family, beta, y, x, xhat, w)
    bread = np.linalg.inv(jac)
    return beta, bread @ (m.T @ m) @ bread.T


def _moments(
    family: str, beta: est.Array, y: est.Array, x: est.Array, xhat: est.Array, w: est.Array
) -> tuple[est.Array, est.Array]:
    """Each row's moment and the Jacobian of their sum (negated)."""

    def parts(a: est.Array) -> tuple[est.Array, est.Array]:
        eta = a @ beta
        if family == "binomial":
            mu = expit(eta)
            return a * (y - mu)[:, None], (a * (mu * (1 - mu))[:, None]).T
        return a * (y - eta)[:, None], a.T

    m_hat, d_hat = parts(xhat)
    m_true, d_true = parts(x)
    m = m_hat + w[:, None] * (m_true - m_hat)
    jac = d_hat @ xhat + (d_true * w) @ x - (d_hat * w) @ xhat
    return m, jac


def regress_coded(
    prep: Prepared,
    lhs: str,
    rhs: str,
    formula: str,
    *,
    family: str,
    level: float,
    g: est.Array | None,
    methods: Sequence[str],
) -> dict[str, dict[str, dict[str, float | None]]]:
    """`{method: {term: ...}}` for `model` (its probabilities as the indicators) and `dsl`."""
    from .formula import logit_sandwich, terms_table

    if family == "binomial" and lhs in prep.frame.columns:
        vals = pd.to_numeric(prep.frame[lhs], errors="coerce").dropna()
        if not vals.isin([0, 1]).all():
            raise DataError(f"--formula: --family binomial needs a 0/1 outcome; {lhs!r} is not")
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    if "model" in methods:
        y, _, xf, _, names = matrices(prep, lhs, rhs, formula, prep.f)
        if family == "binomial":
            beta, cov = logit_sandwich(y, xf)
        else:
            beta, cov = dsl_solve(family, y, xf, xf, np.zeros(len(y)))
        out["model"] = terms_table(names, beta, cov, level)
    if "dsl" in methods:
        pred = prep.f if g is None else g
        y, x, xhat, rows, names = matrices(prep, lhs, rhs, formula, pred)
        w = np.where(prep.r, 1.0 / np.where(prep.r, prep.pi, 1.0), 0.0)[rows]
        beta, cov = dsl_solve(family, y, x, xhat, w)
        out["dsl"] = terms_table(names, beta, cov, level)
    return out
