"""Calibrating a coded table: every row at once, after coding, from the coded columns.

Works on the output table (not on answers as they arrive), so a run resumed from the store
calibrates exactly as an uninterrupted one. For each variable, the raw probabilities are kept
in `V_rawp_<category>`, the calibrated ones replace `V_p_<category>`, and the label,
confidence and entropy follow them. Calibration acts on the distribution over the categories;
`V_outside` (mass on answers naming no category) is kept, and the categories share the rest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .. import output
from .._exceptions import DataError, UsageError
from ..codebook import Codebook, Variable
from ..output import CONFIDENCE, ENTROPY, INVALID, OUTSIDE
from . import METHODS
from .methods import FitCalibrator, Matrix, cross_fit, make_calibrator

CONTENT_FREE_INPUTS = ("N/A", "[MASK]", "...")
"""Inputs with no content, coded through the same prompt to read the model's bias (Zhao et
al. 2021 use "N/A", "" and "[MASK]"; textcoder never sends an empty text, hence "...")."""


def prob_columns(variable: Variable, prefix: str = "p") -> list[str]:
    """`V_p_<category>` (or `V_rawp_<category>`) for every category, codebook order."""
    return output.prob_columns(variable, prefix)


def gold_columns(
    codebook: Codebook, spec: str | Sequence[str] | Mapping[str, str] | None
) -> dict[str, str]:
    """Which column holds each variable's human codes: `COLUMN` (one variable to calibrate),
    `VAR=COLUMN` entries, or a mapping."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        out = dict(spec)
    else:
        parts = [spec] if isinstance(spec, str) else list(spec)
        out = {}
        for part in parts:
            name, eq, col = part.partition("=")
            if eq and name.strip() in {v.name for v in codebook.variables}:
                out[name.strip()] = col.strip()
                continue
            single = [v.name for v in codebook.variables if not v.multi]
            if len(single) != 1:
                raise UsageError(
                    f"--gold {part!r}: the codebook has several variables; write VAR=COLUMN"
                )
            out[single[0]] = part
    names = {v.name for v in codebook.variables}
    for name in out:
        if name not in names:
            raise UsageError(f"--gold: no variable {name!r} in the codebook")
    return out


def gold_codes(table: pd.DataFrame, column: str, variable: Variable) -> npt.NDArray[np.int64]:
    """Category index per row from a column of human codes; -1 where the row has none."""
    if column not in table.columns:
        cols = ", ".join(map(str, table.columns))
        raise DataError(f"no column {column!r} of human codes (columns: {cols})")
    out = np.full(len(table), -1, dtype=np.int64)
    for i, value in enumerate(table[column].tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        text = str(value).strip()
        if not text:
            continue
        cat = variable.find(text)
        if cat is None:
            raise DataError(
                f"column {column!r}, row {i + 1}: {text!r} is not a category of "
                f"{variable.name!r} ({', '.join(variable.labels)})"
            )
        out[i] = variable.labels.index(cat.label)
    return out


def calibrate_table(
    coded: pd.DataFrame,
    codebook: Codebook,
    method: str,
    *,
    gold: Mapping[str, str] | None = None,
    content_free: Mapping[str, npt.ArrayLike] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A copy of the coded table calibrated with `method`, and what the manifest records.

    `gold` maps a variable to its column of human codes (`fit` only); `content_free` maps a
    variable to the distributions its content-free inputs got (`content-free`, `prior`).
    With `fit`, rows with a human code get cross-fitted probabilities (`folds` folds, from
    fits that never saw them), so evaluating them is honest; the others get the fit on all.
    """
    if method not in METHODS:
        raise UsageError(f"unknown calibration {method!r}; one of {', '.join(METHODS)}")
    out = coded.copy()
    info: dict[str, Any] = {"method": method, "variables": {}}
    if method == "none":
        return out, info
    if method == "fit":
        info.update(folds=folds, seed=seed, gold=dict(gold or {}))
    for var in codebook.variables:
        if var.multi:
            info["variables"][var.name] = {"skipped": "multi-label variable"}
            continue
        cf = None if content_free is None else _usable(content_free.get(var.name), var)
        gold_col = None if gold is None else gold.get(var.name)
        if method == "fit" and gold_col is None:
            raise UsageError(f"calibration 'fit' needs a column of human codes for {var.name!r}")
        if method == "content-free" and cf is None and _model_probs(out, var)[2].any():
            raise UsageError("calibration 'content-free' needs content-free distributions")
        y = gold_codes(out, gold_col, var) if gold_col is not None else None
        info["variables"][var.name] = _calibrate_variable(out, var, method, y, cf, folds, seed)
    return out, info


def _model_probs(out: pd.DataFrame, var: Variable) -> tuple[list[str], Matrix, Any]:
    """The columns of the model's own probabilities (`rawp` where a table was calibrated
    before), their values, and which rows have probabilities (finite, some mass)."""
    pcols, rawcols = prob_columns(var), prob_columns(var, "rawp")
    missing = [c for c in pcols if c not in out.columns]
    if missing:
        raise DataError(f"the coded table lacks {', '.join(missing)}")
    source = rawcols if all(c in out.columns for c in rawcols) else pcols
    raw: Matrix = out[source].to_numpy(dtype=np.float64, na_value=np.nan)
    return source, raw, np.isfinite(raw).all(axis=1) & (raw.sum(axis=1) > 0)


def has_probabilities(coded: pd.DataFrame, codebook: Codebook) -> bool:
    """Whether any row of a coded table has probabilities to calibrate: an empty table, or
    one of empty texts only, has none, and content-free inputs are then not worth paying for."""
    return any(bool(_model_probs(coded, v)[2].any()) for v in codebook.variables if not v.multi)


def _usable(content_free: npt.ArrayLike | None, var: Variable) -> Matrix | None:
    """The content-free distributions that carry category probabilities (failed ones dropped)."""
    if content_free is None:
        return None
    cf = np.atleast_2d(np.asarray(content_free, dtype=np.float64))
    ok = np.isfinite(cf).all(axis=1) & (np.nan_to_num(cf).sum(axis=1) > 0)
    if not ok.any():
        raise UsageError(
            f"{var.name!r}: the content-free inputs got no probability on any category; "
            "choose another --calibrate or --scoring"
        )
    out: Matrix = cf[ok]
    return out


def _calibrate_variable(
    out: pd.DataFrame,
    var: Variable,
    method: str,
    gold: npt.NDArray[np.int64] | None,
    content_free: npt.ArrayLike | None,
    folds: int,
    seed: int,
) -> dict[str, Any]:
    source, raw, valid = _model_probs(out, var)
    mass = raw.sum(axis=1)
    if not valid.any() and method != "fit":  # an empty table, or only empty texts
        params: dict[str, Any] = {"calibrated_rows": 0, "note": "no row has probabilities"}
        _keep_raw(out, var, source, raw)
        return params
    if not valid.any():
        raise DataError(f"{var.name!r}: no row has probabilities to calibrate")
    pn: Matrix = raw[valid] / mass[valid, None]
    if method == "fit":
        assert gold is not None
        has = valid & (gold >= 0)
        if has.sum() < 2:
            raise UsageError(
                f"calibration 'fit' needs at least 2 coded rows with human codes for {var.name!r}"
            )
        yv = gold[valid]
        hv = yv >= 0
        cal = FitCalibrator().fit(pn[hv], yv[hv])
        q = cal.transform(pn)
        cv = cross_fit(pn[hv], yv[hv], "fit", folds=folds, seed=seed)
        q[hv] = cv.probs
        params = {
            **cal.params,
            "cross_fitted_rows": int(hv.sum()),
            "folds": int(cv.folds.max()) + 1,
        }
    else:
        cal = make_calibrator(method, content_free).fit(pn)
        q = cal.transform(pn)
        params = cal.params
    params["calibrated_rows"] = int(valid.sum())
    _keep_raw(out, var, source, raw)
    cal_probs = raw.copy()
    cal_probs[valid] = q * mass[valid, None]
    for j, col in enumerate(prob_columns(var)):
        out[col] = cal_probs[:, j]
    _follow(out, var, cal_probs, valid)
    return params


def _keep_raw(out: pd.DataFrame, var: Variable, source: list[str], raw: Matrix) -> None:
    """The raw probabilities kept as `V_rawp_*`, right after `V_outside` (once)."""
    pcols, rawcols = prob_columns(var), prob_columns(var, "rawp")
    if source != pcols:
        return
    names = list(out.columns)
    outside = output.column(var.name, OUTSIDE)
    anchor = outside if outside in names else pcols[-1]
    at = names.index(anchor) + 1
    for j, col in enumerate(rawcols):
        out.insert(at + j, col, raw[:, j])


def _follow(out: pd.DataFrame, var: Variable, probs: Matrix, valid: npt.NDArray[np.bool_]) -> None:
    """Labels, confidence and entropy from the calibrated probabilities (valid rows only).

    A row whose answer named no category keeps its `invalid` label."""
    v = var.name
    labels = np.asarray(var.labels, dtype=object)
    if v in out.columns:
        current = out[v].astype(object).to_numpy()
        relabel = valid & (current != INVALID)
        new = current.copy()
        new[relabel] = labels[probs[relabel].argmax(axis=1)]
        out[v] = new
    conf_col, ent_col, out_col = (output.column(v, k) for k in (CONFIDENCE, ENTROPY, OUTSIDE))
    if conf_col in out.columns:
        conf = out[conf_col].to_numpy(dtype=np.float64, copy=True)
        conf[valid] = probs[valid].max(axis=1)
        out[conf_col] = conf
    if ent_col in out.columns:
        other = (
            out[out_col].to_numpy(dtype=np.float64)
            if out_col in out.columns
            else np.zeros(len(out))
        )
        allp = np.column_stack([probs, other])[valid]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(allp > 0, allp * np.log(np.where(allp > 0, allp, 1.0)), 0.0)
        ent = out[ent_col].to_numpy(dtype=np.float64, copy=True)
        ent[valid] = -terms.sum(axis=1)
        out[ent_col] = ent
    _follow_ordinal(out, var, probs, valid)


def _follow_ordinal(
    out: pd.DataFrame, var: Variable, probs: Matrix, valid: npt.NDArray[np.bool_]
) -> None:
    """An ordinal variable's expected and median position from the calibrated probabilities."""
    exp_col, med_col = (
        output.column(var.name, output.EXPECTED),
        output.column(var.name, output.MEDIAN),
    )
    if exp_col not in out.columns or not valid.any():
        return
    p = probs[valid] / probs[valid].sum(axis=1, keepdims=True)
    positions = np.arange(1, p.shape[1] + 1)
    expected = out[exp_col].to_numpy(dtype=np.float64, copy=True)
    expected[valid] = p @ positions
    out[exp_col] = expected
    if med_col in out.columns:
        median = out[med_col].to_numpy(dtype=object, copy=True)
        median[valid] = (np.cumsum(p, axis=1) >= 0.5 - 1e-12).argmax(axis=1) + 1
        out[med_col] = median


def uncalibrated(table: pd.DataFrame, variable: Variable) -> pd.DataFrame | None:
    """The table as it was before calibration, for side-by-side evaluation: `V_p_*` from
    `V_rawp_*` and the label the raw argmax (an `invalid` label stays); None if uncalibrated."""
    pcols, rawcols = prob_columns(variable), prob_columns(variable, "rawp")
    if not all(c in table.columns for c in rawcols):
        return None
    out = table.copy()
    raw = out[rawcols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    for j, col in enumerate(pcols):
        out[col] = raw[:, j]
    v = variable.name
    if v in out.columns:
        valid = np.isfinite(raw).all(axis=1) & (np.nan_to_num(raw).sum(axis=1) > 0)
        current = out[v].astype(object).to_numpy()
        keep = np.array([x is None or x != x or str(x) in ("", INVALID) for x in current])
        relabel = valid & ~keep
        new = current.copy()
        new[relabel] = np.asarray(variable.labels, dtype=object)[raw[relabel].argmax(axis=1)]
        out[v] = new
    return out
