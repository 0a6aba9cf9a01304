"""Sampling designs for the human-coded validation sample: a simple random sample, or one
stratified by a column (the model's label), with every row's inclusion probability, which
the design-based estimators need."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._exceptions import UsageError
from .columns import SAMPLE_PROB, SAMPLE_STRATUM, SAMPLED, label_column, prob_prefix

Allocation = Literal["proportional", "equal"]
Uncertainty = Literal["least-confidence", "entropy"]
#: the share of the sample drawn uniformly under the uncertainty design: every row's floor
UNIFORM_SHARE = 0.2


@dataclass(frozen=True)
class Draw:
    """A drawn sample: which rows (positions, ascending) and every row's inclusion probability."""

    rows: npt.NDArray[np.int64]
    prob: npt.NDArray[np.float64]
    sizes: dict[str, tuple[int, int]]  # stratum -> (drawn, rows); {"": (n, N)} when unstratified
    strata: npt.NDArray[np.object_] | None = None  # each row's stratum, where there are any

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        out = np.zeros(self.prob.size, dtype=bool)
        out[self.rows] = True
        return out


def simple_random(n_rows: int, n: int, seed: int = 0) -> Draw:
    """`n` of `n_rows` rows without replacement, each with probability n / n_rows."""
    _check_size(n, n_rows)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_rows, size=n, replace=False)).astype(np.int64)
    prob = np.full(n_rows, n / n_rows if n_rows else 0.0)
    return Draw(rows=rows, prob=prob, sizes={"": (n, n_rows)})


def stratified(
    strata: list[str], n: int, seed: int = 0, allocation: Allocation = "proportional"
) -> Draw:
    """`n` rows drawn within the strata, allocated in proportion to their sizes or equally
    (which oversamples rare strata); within a stratum, a simple random sample."""
    _check_size(n, len(strata))
    names, codes = np.unique(np.asarray(strata, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(codes, minlength=names.size)
    alloc = allocate(counts, n, allocation)
    empty = np.flatnonzero(alloc == 0)
    if empty.size:
        h = int(empty[np.argmin(counts[empty])])
        raise UsageError(
            f"{empty.size} of {names.size} strata would get no row and so probability 0 "
            f"(e.g. {str(names[h])!r}, {int(counts[h])} rows): raise -n, use --allocation "
            "equal, or merge small strata"
        )
    rng = np.random.default_rng(seed)
    prob = np.zeros(len(strata))
    picked = []
    for h in range(names.size):
        members = np.flatnonzero(codes == h)
        picked.append(rng.choice(members, size=alloc[h], replace=False))
        prob[members] = alloc[h] / counts[h]
    rows = np.sort(np.concatenate(picked)).astype(np.int64)
    sizes = {str(names[h]): (int(alloc[h]), int(counts[h])) for h in range(names.size)}
    return Draw(rows=rows, prob=prob, sizes=sizes, strata=names[codes].astype(object))


def uncertainty(
    u: npt.NDArray[np.float64], n: int, seed: int = 0, uniform_share: float = UNIFORM_SHARE
) -> Draw:
    """`n` rows drawn with probabilities that grow with each row's uncertainty `u` (active
    inference, Zrnic and Candes 2024): a share `uniform_share` of the sample spread evenly
    (so every row has a probability of at least that share of n / rows) and the rest in
    proportion to `u`, capped at 1; drawn by randomised systematic sampling, which gives
    exactly `n` rows with exactly those probabilities."""
    _check_size(n, u.size)
    if not 0 < uniform_share <= 1:
        raise UsageError(f"--uniform-share {uniform_share}: give a share in (0, 1]")
    u = np.nan_to_num(np.clip(u, 0.0, None), nan=float(np.nanmax(u, initial=1.0)))
    weight = u / u.sum() if u.sum() > 0 else np.full(u.size, 1.0 / u.size)
    prob = capped(n * (uniform_share / u.size + (1 - uniform_share) * weight), n)
    rng = np.random.default_rng(seed)
    order = rng.permutation(u.size)
    edges = np.concatenate([[0.0], np.cumsum(prob[order])])
    points = rng.random() + np.arange(n)
    hit = np.searchsorted(edges, points, side="right") - 1
    rows = np.sort(order[np.clip(hit, 0, u.size - 1)]).astype(np.int64)
    return Draw(
        rows=rows, prob=prob, sizes={"": (n, u.size)}, strata=np.full(u.size, "all", dtype=object)
    )


def capped(p: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """Probabilities proportional to `p` that sum to `n` with none above 1: rows that would
    pass 1 are taken for certain and the rest rescaled, until none does."""
    out = p.astype(float).copy()
    fixed = np.zeros(out.size, dtype=bool)
    for _ in range(out.size):
        free = ~fixed
        out[free] = out[free] * (n - fixed.sum()) / out[free].sum()
        over = free & (out >= 1.0)
        if not over.any():
            break
        out[over] = 1.0
        fixed |= over
    return out


def row_uncertainty(
    df: pd.DataFrame, variable: str | None, measure: Uncertainty
) -> npt.NDArray[np.float64]:
    """Each row's uncertainty from the model's `V_p_<category>` columns: 1 minus the largest
    probability, or the entropy; the variable is the only one with such columns, or named."""
    found = sorted({str(c).split("_p_")[0] for c in df.columns if "_p_" in str(c)})
    if variable is None:
        if len(found) != 1:
            raise UsageError(
                f"--design uncertainty: name the variable with --variable ({', '.join(found) or 'no V_p_<category> columns found'})"
            )
        variable = found[0]
    cols = [c for c in df.columns if str(c).startswith(prob_prefix(variable))]
    if len(cols) < 2:
        raise UsageError(f"--design uncertainty: no {prob_prefix(variable)}<category> columns")
    p = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    p = p / p.sum(axis=1, keepdims=True)
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(-np.nansum(p * np.log(p), axis=1) / np.log(len(cols)))
    return np.asarray(1.0 - np.max(p, axis=1))


def allocate(
    counts: npt.NDArray[np.int64], n: int, allocation: Allocation
) -> npt.NDArray[np.int64]:
    """How many of `n` to draw from each stratum of `counts` rows: proportional by largest
    remainder, or equal shares with what a small stratum cannot give passed to the others."""
    if allocation == "proportional":
        exact = n * counts / counts.sum()
        alloc: npt.NDArray[np.int64] = np.floor(exact).astype(np.int64)
        order = np.argsort(-(exact - alloc), kind="stable")
        alloc[order[: n - int(alloc.sum())]] += 1
        return alloc
    if allocation != "equal":
        raise UsageError(f"unknown allocation {allocation!r} (proportional or equal)")
    alloc = np.zeros(counts.size, dtype=np.int64)
    left = n
    open_ = counts > 0
    while left > 0 and open_.any():
        share = max(left // int(open_.sum()), 1)
        for h in np.flatnonzero(open_):
            take = min(share, int(counts[h] - alloc[h]), left)
            alloc[h] += take
            left -= take
        open_ = alloc < counts
    return alloc


def _check_size(n: int, n_rows: int) -> None:
    if n < 1:
        raise UsageError(f"-n {n}: the sample needs at least one row")
    if n > n_rows:
        raise UsageError(f"-n {n}: the table has only {n_rows} rows")


def draw_table(
    df: pd.DataFrame,
    n: int,
    *,
    seed: int = 0,
    strata: str | None = None,
    allocation: Allocation = "proportional",
    design: str = "random",
    variable: str | None = None,
    measure: Uncertainty = "least-confidence",
    uniform_share: float = UNIFORM_SHARE,
) -> tuple[pd.DataFrame, pd.DataFrame, Draw]:
    """The sample (its rows with `sample_prob`) and the whole table marked (`sampled`,
    `sample_prob`), drawn at random, within the values of the column `strata`, or with
    probabilities that grow with the model's uncertainty (`design="uncertainty"`)."""
    if design == "uncertainty":
        if strata is not None:
            raise UsageError("--design uncertainty draws from the whole table: drop --strata")
        u = row_uncertainty(df, variable, measure)
        drawn = uncertainty(u, n, seed, uniform_share)
    elif design != "random":
        raise UsageError(f"--design {design!r}: random or uncertainty")
    elif strata is None:
        drawn = simple_random(len(df), n, seed)
    else:
        column = strata if strata in df.columns else label_column(strata)
        if column not in df.columns:
            raise UsageError(f"--strata {strata!r}: no such column")
        values = ["" if v is None or v != v else str(v) for v in df[column]]
        try:
            drawn = stratified(values, n, seed, allocation)
        except UsageError as exc:
            hint = (
                f" ({column!r} holds numbers: one stratum per value; bin it into a few "
                "groups first)"
                if _numeric(df[column])
                else ""
            )
            raise UsageError(f"--strata {strata!r}: {exc}{hint}") from None
    marked = df.copy()
    marked[SAMPLE_PROB] = drawn.prob
    if drawn.strata is not None:
        marked[SAMPLE_STRATUM] = drawn.strata
    marked[SAMPLED] = drawn.mask
    sample = marked.iloc[drawn.rows].drop(columns=[SAMPLED]).reset_index(drop=True)
    return sample, marked, drawn


def _numeric(values: pd.Series) -> bool:
    """Whether a column holds numbers that are not all whole (a score, not a label)."""
    num = pd.to_numeric(values, errors="coerce")
    return bool(num.notna().all() and (num != num.round()).any())
