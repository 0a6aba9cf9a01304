"""`infer`: prevalence (and regressions) from a coded table and its human codes, as the
dict that `textcoder infer --json` writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._exceptions import UsageError
from ..codebook import Codebook
from . import prevalence as prev
from .crossfit import FOLDS, crossfit
from .estimators import METHODS, Array
from .inclusion import Missing
from .regression import FAMILIES, OUTCOME_UNITS, regress, split_formula
from .table import Prepared, Source, load

#: how DSL predicts the human code: R's dsl cross-fits by default; raw is the model as it is
DSL_PREDICTIONS = {
    "crossfit": "cross-fitted ({folds} folds): a logistic regression of the human code on the "
    "model's probabilities{extra}",
    "raw": "raw: the model's probability as it is",
}


def infer(
    path: str | Path,
    source: Source,
    *,
    variable: str | None = None,
    codebook: Codebook | None = None,
    by: str | None = None,
    level: float = 0.95,
    methods: Sequence[str] = METHODS,
    target_width: float | None = None,
    formula: str | None = None,
    family: str = "gaussian",
    covariates: Sequence[str] = (),
    missing: Missing = "adjust",
    dsl_prediction: str = "crossfit",
) -> dict[str, Any]:
    """Read `path` and its human codes, and estimate; see `estimate` for the keys. `missing`
    says what drawn rows without a human code get: `adjust` (assumed missing at random
    within their stratum, and said) or `refuse`."""
    prep = load(path, source, variable=variable, codebook=codebook, missing=missing)
    return estimate(
        prep,
        by=by,
        level=level,
        methods=methods,
        target_width=target_width,
        formula=formula,
        family=family,
        covariates=covariates,
        dsl_prediction=dsl_prediction,
    )


def estimate(
    prep: Prepared,
    *,
    by: str | None = None,
    level: float = 0.95,
    methods: Sequence[str] = METHODS,
    target_width: float | None = None,
    formula: str | None = None,
    family: str = "gaussian",
    covariates: Sequence[str] = (),
    dsl_prediction: str = "crossfit",
) -> dict[str, Any]:
    """`variable`, `n_total`, `n_coded`, `level`, `methods`, `prevalence`
    ({category: {method: {estimate, ci_low, ci_high, se}}}), `effective_n`, optionally `by`
    ({group: ...}), `more_needed`, `regression` ({method: {term: ...}}), and `warnings`.
    DSL's prediction of the human code is cross-fitted from the model's probabilities (and
    `covariates`), as R's dsl does, or with `dsl_prediction="raw"` the model's probability
    itself; `dsl_prediction` in the result says which."""
    _check(level, methods, by, prep)
    if dsl_prediction not in DSL_PREDICTIONS:
        raise UsageError(f"--dsl-prediction {dsl_prediction!r}: {' or '.join(DSL_PREDICTIONS)}")
    if covariates and dsl_prediction == "raw":
        raise UsageError("--covariates feed the cross-fitted prediction: drop --dsl-prediction raw")
    warnings = list(prep.warnings)
    if prep.r.all():
        warnings.append("every row has a human code: the human figures are the prevalence")
    g = crossfit(prep, covariates) if dsl_prediction == "crossfit" else None
    cells, eff, parts = prev.table(prep, methods, level, g=g)
    out: dict[str, Any] = {
        "variable": prep.variable.name,
        "n_total": len(prep.r),
        "n_coded": int(prep.r.sum()),
        "level": level,
        "methods": list(methods),
        "prevalence": cells,
        "effective_n": eff,
        "dsl_prediction": describe(dsl_prediction, covariates),
        "ppi_form": "classic" if prep.equal_pi else "ipw",
    }
    if prep.design is not None:
        out["design"] = prep.design.summary()
    if covariates:
        out["covariates"] = list(covariates)
    if by is not None:
        out["by_column"] = by
        out["by"] = by_group(prep, by, methods, level, g)
    if target_width is not None:
        out["target_width"] = target_width
        out["more_needed"] = prev.more_needed(parts, target_width, level)
    if formula is not None:
        out.update(regression(prep, formula, family, level, g, methods, warnings))
    out["warnings"] = warnings
    return out


def regression(
    prep: Prepared,
    formula: str,
    family: str,
    level: float,
    g: Array | None,
    methods: Sequence[str],
    warnings: list[str],
) -> dict[str, Any]:
    """`formula`, `family`, `scale` and `regression`; a PPI++ fit left out earns a warning
    that says why."""
    coded_regressor = split_formula(formula, prep)[0] is None
    scale = OUTCOME_UNITS if coded_regressor and family == "gaussian" else FAMILIES.get(family)
    fits = regress(prep, formula, family=family, level=level, g=g, methods=methods)
    if "ppi" in methods and "ppi" not in fits:
        warnings.append(
            "ppi regression not computed: the coded variable is a regressor, and PPI++ "
            "needs every regressor observed on every row; use dsl"
            if coded_regressor
            else "ppi regression not computed: it needs a simple random sample of coded "
            "rows (and some uncoded rows); use dsl"
        )
    return {"formula": formula, "family": family, "scale": scale, "regression": fits}


def describe(dsl_prediction: str, covariates: Sequence[str]) -> str:
    """How DSL predicted the human code, in words for the output."""
    if dsl_prediction == "raw":
        return DSL_PREDICTIONS["raw"]
    extra = f" and {', '.join(covariates)}" if covariates else ""
    return DSL_PREDICTIONS["crossfit"].format(folds=FOLDS, extra=extra)


def by_group(
    prep: Prepared, column: str, methods: Sequence[str], level: float, g: Array | None = None
) -> dict[str, Any]:
    """The prevalence table per value of `column` (inclusion probabilities as drawn over the
    whole table)."""
    values = prep.frame[column].map(lambda x: "" if x is None else str(x)).to_numpy()
    groups: dict[str, Any] = {}
    for value in sorted(set(values)):
        rows = values == value
        cells, _, _ = prev.table(prep, methods, level, rows=rows, g=g)
        groups[str(value)] = {
            "n_total": int(rows.sum()),
            "n_coded": int((rows & prep.r).sum()),
            "prevalence": cells,
        }
    return groups


def _check(level: float, methods: Sequence[str], by: str | None, prep: Prepared) -> None:
    if not 0 < level < 1:
        raise UsageError(f"--level {level}: give a level between 0 and 1, e.g. 0.95")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)} (use {', '.join(METHODS)})")
    if by is not None and by not in prep.frame.columns:
        raise UsageError(f"--by {by!r}: no such column")
