"""Regressions where the outcome is a category's indicator: by the model alone (its
probability as the outcome), by PPI++ (`ppi_regression`) and by DSL (the design-adjusted
pseudo-outcome), linear or logistic, with sandwich (HC0) intervals as R's dsl gives them.
patsy builds the design from the formula; statsmodels fits the linear models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._exceptions import UsageError
from . import columns as col
from . import estimators as est
from .coded_regressor import regress_coded
from .formula import check_design, formula_error, logit_sandwich, numeric_columns, terms_table
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
        raise formula_error(exc, formula, where) from None
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
            out[method] = terms_table(d.names, beta, cov, level)
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
        out[method] = terms_table(d.names, beta, cov, level)
    return out
