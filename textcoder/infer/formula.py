"""From a formula's right-hand side to numbers: text columns read as numbers, patsy's errors as
one line, designs whose coefficients no data can give refused, the logistic sandwich, and the
table of terms; shared by the DSL/PPI regressions and the coded-regressor path."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from .._exceptions import DataError, UsageError
from . import estimators as est


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


def formula_error(exc: Exception, formula: str, where: str = "the table") -> UsageError:
    """patsy's error as one line: the column a term names that the table lacks, else its
    first line."""
    cause = exc.__cause__
    if isinstance(cause, NameError) and getattr(cause, "name", None):
        return UsageError(f"--formula {formula!r}: no column {cause.name!r} in {where}")
    first = str(exc).strip().splitlines()[0]
    return UsageError(f"--formula {formula!r}: {first}")


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


def terms_table(
    names: list[str], beta: est.Array, cov: est.Array, level: float
) -> dict[str, dict[str, float | None]]:
    """Each term's estimate, normal interval at `level` and standard error (None where not
    finite)."""
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
