"""Prevalence of every category by the four methods side by side, overall or per group,
with the effective number of human codes and how many more a target width needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from . import estimators as est
from .table import MIN_CODED, Prepared

Cell = dict[str, float | bool | None]


def estimate(
    f: est.Array,
    y: est.Array,
    r: est.Mask,
    pi: est.Array,
    methods: Sequence[str],
    g: est.Array | None = None,
    ipw: bool = False,
) -> dict[str, est.Estimate]:
    """One category's estimate by each method named in `methods` (1-D arrays over rows);
    `g` is DSL's prediction where it differs from the model's (cross-fitted); `ipw` takes
    PPI++ in its inverse-probability-weighted form (unequal probabilities)."""
    out: dict[str, est.Estimate] = {}
    for m in methods:
        if m == "model":
            out[m] = est.model_only(f)
        elif m == "human":
            out[m] = est.human_only(y, r, pi)
        elif m == "ppi":
            out[m] = est.ppi_ipw(f, y, r, pi) if ipw else est.ppi(f, y, r)
        elif m == "dsl":
            out[m] = est.dsl(f if g is None else g, y, r, pi)
        else:
            raise ValueError(f"unknown method {m!r}")
    return out


CELL = ("estimate", "ci_low", "ci_high", "se", "clipped")


def cell(e: est.Estimate, level: float) -> Cell:
    """`{estimate, ci_low, ci_high, se, clipped}` as plain floats (None where undefined);
    a share lies in [0, 1], so the estimate and bounds are clipped to it, and `clipped`
    says where that happened."""
    lo, hi = e.interval(level)
    raw = [_num(v) for v in (e.estimate, lo, hi)]
    kept = [None if v is None else min(max(v, 0.0), 1.0) for v in raw]
    out: Cell = dict(zip(CELL[:3], kept, strict=True))
    out["se"] = _num(e.se)
    out["clipped"] = None if raw[0] is None else kept != raw
    return out


def _num(x: Any) -> float | None:
    v = float(x)
    return None if not np.isfinite(v) else round(v, 10)


def table(
    prep: Prepared,
    methods: Sequence[str],
    level: float,
    rows: est.Mask | None = None,
    g: est.Array | None = None,
) -> tuple[dict[str, dict[str, Cell]], dict[str, dict[str, float | None]], dict[str, Any]]:
    """Per category: the methods' cells, the effective n of the corrected ones, and the
    figures `more_needed` works from; over `rows` (a group) or all rows; `g` (rows,
    categories) is DSL's prediction when cross-fitted."""
    sel = np.ones(len(prep.r), dtype=bool) if rows is None else rows
    r, pi = prep.r[sel], prep.pi[sel]
    cells: dict[str, dict[str, Cell]] = {}
    eff: dict[str, dict[str, float | None]] = {}
    parts: dict[str, Any] = {}
    for j, lab in enumerate(prep.labels):
        f, y = prep.f[sel, j], prep.y[sel, j]
        if r.sum() < MIN_CODED:  # a group with fewer than two codes: no interval
            cells[lab] = {m: dict.fromkeys(CELL) for m in methods}
            continue
        gj = f if g is None else g[sel, j]
        found = estimate(f, y, r, pi, methods, gj, ipw=not prep.equal_pi)
        cells[lab] = {m: cell(e, level) for m, e in found.items()}
        eff[lab] = {m: _num(est.effective_n(e)) for m, e in found.items() if m != "model"}
        parts[lab] = (f, y, r, pi, found, gj, not prep.equal_pi)
    return cells, eff, parts


def more_needed(
    parts: dict[str, Any], width: float, level: float
) -> dict[str, dict[str, int | None]]:
    """For each category and corrected method, about how many more human codes (drawn at
    random) bring the interval's half-width down to `width`; None where the model's own
    spread alone is wider, or where the table has too few rows."""
    z = float(norm.ppf(0.5 + level / 2))
    target = (width / z) ** 2
    out: dict[str, dict[str, int | None]] = {}
    for lab, (f, y, r, pi, found, g, ipw) in parts.items():
        n, total = int(r.sum()), len(r)
        need: dict[str, float | None] = {}
        if "human" in found:
            need["human"] = n * float(found["human"].se) ** 2 / target
        if "ppi" in found and ipw:
            need["ppi"] = _more_dsl(
                found["ppi"], y, r, pi, est.ipw_lambda(f, y, r, pi) * f, n, target
            )
        elif "ppi" in found:
            lam = float(est.ppi_lambda(f, y, r))
            a = lam**2 * float(f[~r].var()) / max(total - n, 1)
            b = float((y[r] - lam * f[r]).var())
            need["ppi"] = b / (target - a) if target > a else None
        if "dsl" in found:
            need["dsl"] = _more_dsl(found["dsl"], y, r, pi, g, n, target)
        out[lab] = {
            m: (None if v is None or v > total else max(0, int(np.ceil(v)) - n))
            for m, v in need.items()
        }
    return out


def _more_dsl(
    e: est.Estimate, y: est.Array, r: est.Mask, pi: est.Array, g: est.Array, n: int, target: float
) -> float | None:
    """The human codes an AIPW estimate (DSL, weighted PPI++) with prediction `g` needs for
    a squared SE of `target`: the residual part of its variance shrinks as 1/n."""
    total = len(r)
    resid = float(np.sum((y[r] - g[r]) ** 2 / pi[r] ** 2)) / total**2
    fixed = float(e.se) ** 2 - resid
    return n * resid / (target - fixed) if target > fixed else None
