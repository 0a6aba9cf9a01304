"""Regressions where the outcome is a category's indicator: by the model alone (its
probability as the outcome), by PPI++ (`ppi_regression`) and by DSL (the design-adjusted
pseudo-outcome), linear or logistic, with sandwich (HC0) intervals as R's dsl gives them.
patsy builds the design from the formula; statsmodels fits the linear models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from .._exceptions import DataError, UsageError
from . import columns as col
from . import estimators as est
from .coded_regressor import regress_coded
from .ppi_regression import ppi_regression
from .table import Prepared

#: the regression families and the scale their coefficients are on
FAMILIES = {"gaussian": "linear probability", "binomial": "log-odds"}
#: the scale of a linear model's coefficients when the outcome is an observed column
OUTCOME_UNITS = "the outcome's units"


def split_formula(formula: str, prep: Prepared) -> tuple[int | None, str, str]:
    """The category the outcome names (its position; None where the outcome is a column of
    the table, with the coded variable as a regressor), the outcome and the right side."""
    if formula.count("~") != 1:
        raise UsageError(f"--formula {formula!r}: expected 'outcome ~ terms'")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    var = prep.variable
    cat = var.find(lhs) or next(
        (c for c in var.categories if col.slug(c.label) == col.slug(lhs)), None
    )
    if cat is not None:
        return var.labels.index(cat.label), lhs, rhs or "1"
    if lhs not in prep.frame.columns:
        raise UsageError(
            f"--formula: {lhs!r} is neither a category of {var.name!r} "
            f"({', '.join(var.labels)}) nor a column of the table"
        )
    return None, lhs, rhs or "1"


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


@dataclass(frozen=True)
class Design:
    """The right-hand side's design matrix over the rows it can use (no missing value)."""

    x: est.Array
    names: list[str]
    rows: est.Mask  # which rows of the table the matrix holds


def design(prep: Prepared, rhs: str, formula: str, where: str = "the table") -> Design:
    """patsy's design matrix of `rhs` over the table; a term naming no column, or constant,
    is a one-line error naming it."""
    import patsy

    data = numeric_columns(prep.frame)
    try:
        mat = patsy.dmatrix(rhs, data, NA_action="drop", return_type="dataframe")
    except patsy.PatsyError as exc:
        cause = exc.__cause__
        if isinstance(cause, NameError) and getattr(cause, "name", None):
            raise UsageError(
                f"--formula {formula!r}: no column {cause.name!r} in {where}"
            ) from None
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"--formula {formula!r}: {first}") from None
    names = list(mat.columns)
    slices = mat.design_info.term_name_slices.items()
    empty = [t for t, sl in slices if sl.start == sl.stop]
    x = mat.to_numpy(dtype=float)
    check_design(x, names + empty, formula)
    rows = np.zeros(len(data), dtype=bool)
    rows[data.index.get_indexer(mat.index)] = True
    return Design(x, names, rows)


def regress(
    prep: Prepared,
    formula: str,
    *,
    family: str = "gaussian",
    level: float = 0.95,
    g: est.Array | None = None,
    where: str = "the table",
    methods: Sequence[str] = ("model", "ppi", "dsl"),
) -> dict[str, dict[str, dict[str, float | None]]]:
    """`{method: {term: {estimate, ci_low, ci_high, se}}}` for those of `model` (its
    probability as the outcome), `ppi` (PPI++, a simple random sample only) and `dsl` (the
    pseudo-outcome; `g` (rows, categories) is its prediction, else the model's)."""
    import statsmodels.api as sm

    if family not in FAMILIES:
        raise UsageError(f"--family {family!r}: {' or '.join(FAMILIES)}")
    j, lhs, rhs = split_formula(formula, prep)
    if j is None:
        return regress_coded(
            prep, lhs, rhs, formula, family=family, level=level, g=g, methods=methods
        )
    d = design(prep, rhs, formula, where)
    f, y, r = prep.f[d.rows, j], prep.y[d.rows, j], prep.r[d.rows]
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for method in (m for m in ("model", "ppi", "dsl") if m in methods):
        if method == "ppi":
            if not prep.equal_pi or r.all():
                continue
            beta, cov, _ = ppi_regression(family, d.x, y, f, r)
            out[method] = _terms(d.names, beta, cov, level)
            continue
        if method == "model":
            yv = f
        else:
            gj = f if g is None else g[d.rows, j]
            yv = est.dsl_pseudo(gj, y, r, prep.pi[d.rows])
        if family == "binomial":
            beta, cov = logit_sandwich(yv, d.x)
        else:
            fit = sm.OLS(yv, d.x).fit(cov_type="HC0")
            beta, cov = np.asarray(fit.params), np.asarray(fit.cov_params())
        out[method] = _terms(d.names, beta, cov, level)
    return out


def check_design(x: est.Array, names: list[str], formula: str) -> None:
    """Refuse a design with a constant or collinear term, whose coefficient no data can
    give, naming the term; `names` past the columns of `x` are terms that gave none (a
    factor with one value)."""
    if np.linalg.matrix_rank(x) == x.shape[1] and len(names) == x.shape[1]:
        return
    const = names[x.shape[1] :] + [
        n for k, n in enumerate(names[: x.shape[1]]) if n != "Intercept" and np.ptp(x[:, k]) == 0
    ]
    what = (
        f"term {const[0]!r} is constant"
        if const
        else "its terms are collinear (one is a combination of others)"
    )
    raise DataError(f"--formula {formula!r}: {what}, so its coefficient cannot be estimated")


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
