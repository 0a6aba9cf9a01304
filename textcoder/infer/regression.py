"""Regressions where the outcome is a category's indicator: by the model alone (its
probability as the outcome) and by DSL (the design-adjusted pseudo-outcome), linear or
logistic, with sandwich (HC0) intervals as R's dsl gives them. statsmodels builds the
design from the formula and fits the linear models."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from .._exceptions import DataError, UsageError
from . import columns as col
from . import estimators as est
from .table import Prepared

OUTCOME = "textcoder_outcome_"


def split_formula(formula: str, prep: Prepared) -> tuple[int, str]:
    """The category the outcome names (its position) and the right-hand side."""
    if formula.count("~") != 1:
        raise UsageError(f"--formula {formula!r}: expected 'category ~ terms'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    var = prep.variable
    cat = var.find(lhs) or next(
        (c for c in var.categories if col.slug(c.label) == col.slug(lhs)), None
    )
    if cat is None:
        raise UsageError(
            f"--formula: {lhs!r} is not a category of {var.name!r} ({', '.join(var.labels)})"
        )
    return var.labels.index(cat.label), rhs or "1"


def numeric_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Columns read as text whose every non-empty cell is a number, as numbers (empty: NaN),
    so that `year` is a slope and not a factor."""
    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]):
            s = out[c].replace("", np.nan)
            num = pd.to_numeric(s, errors="coerce")
            if num.notna().sum() == s.notna().sum() and s.notna().any():
                out[c] = num
    return out


def regress(
    prep: Prepared,
    formula: str,
    *,
    family: str = "gaussian",
    level: float = 0.95,
    g: est.Array | None = None,
) -> dict[str, dict[str, dict[str, float | None]]]:
    """`{method: {term: {estimate, ci_low, ci_high}}}` for methods `model` and `dsl`; `g`
    (rows, categories) is DSL's prediction when cross-fitted, else the model's."""
    import statsmodels.formula.api as smf

    j, rhs = split_formula(formula, prep)
    data = numeric_columns(prep.frame)
    gj = prep.f[:, j] if g is None else g[:, j]
    pseudo = est.dsl_pseudo(gj, prep.y[:, j], prep.r, prep.pi)
    outcomes = {"model": prep.f[:, j], "dsl": pseudo}
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for method, yv in outcomes.items():
        data[OUTCOME] = yv
        try:
            design = smf.ols(f"{OUTCOME} ~ {rhs}", data=data, missing="drop")
        except Exception as exc:  # patsy's errors name the term; keep its first line
            first = str(exc).strip().splitlines()[0]
            raise UsageError(f"--formula {formula!r}: {first}") from None
        y, x = np.asarray(design.endog, dtype=float), np.asarray(design.exog, dtype=float)
        names = list(design.exog_names)
        if family == "binomial":
            beta, cov = logit_sandwich(y, x)
        elif family == "gaussian":
            fit = design.fit(cov_type="HC0")
            beta, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
        else:
            raise UsageError(f"--family {family!r}: gaussian or binomial")
        out[method] = _terms(names, beta, cov, level)
    return out


def logit_sandwich(y: est.Array, x: est.Array) -> tuple[est.Array, est.Array]:
    """Solve sum x (y - expit(x b)) = 0 by Newton's method (y may be a pseudo-outcome outside
    [0, 1], which GLM refuses), and the sandwich H^-1 (sum x x' e^2) H^-1."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        mu = expit(x @ beta)
        hess = (x * (mu * (1 - mu))[:, None]).T @ x
        try:
            step = np.linalg.solve(hess, x.T @ (y - mu))
        except np.linalg.LinAlgError:
            raise DataError("--formula: the design is singular (a term is constant?)") from None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    mu = expit(x @ beta)
    bread = np.linalg.inv((x * (mu * (1 - mu))[:, None]).T @ x)
    meat = (x * ((y - mu) ** 2)[:, None]).T @ x
    return beta, bread @ meat @ bread


def _terms(
    names: list[str], beta: est.Array, cov: est.Array, level: float
) -> dict[str, dict[str, float | None]]:
    z = float(norm.ppf(0.5 + level / 2))
    se = np.sqrt(np.diag(cov))
    out: dict[str, dict[str, float | None]] = {}
    for name, b, s in zip(names, beta, se, strict=True):
        vals = (b, b - z * s, b + z * s, s)
        out[name] = {
            k: (float(v) if np.isfinite(v) else None)
            for k, v in zip(("estimate", "ci_low", "ci_high", "se"), vals, strict=True)
        }
    return out
