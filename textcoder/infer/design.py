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
from .columns import SAMPLE_PROB, SAMPLED, label_column

Allocation = Literal["proportional", "equal"]


@dataclass(frozen=True)
class Draw:
    """A drawn sample: which rows (positions, ascending) and every row's inclusion probability."""

    rows: npt.NDArray[np.int64]
    prob: npt.NDArray[np.float64]
    sizes: dict[str, tuple[int, int]]  # stratum -> (drawn, rows); {"": (n, N)} when unstratified

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
    return Draw(rows=rows, prob=prob, sizes=sizes)


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
) -> tuple[pd.DataFrame, pd.DataFrame, Draw]:
    """The sample (its rows with `sample_prob`) and the whole table marked (`sampled`,
    `sample_prob`), drawn at random or within the values of the column `strata`."""
    if strata is None:
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
    marked[SAMPLED] = drawn.mask
    sample = marked.iloc[drawn.rows].drop(columns=[SAMPLED]).reset_index(drop=True)
    return sample, marked, drawn


def _numeric(values: pd.Series) -> bool:
    """Whether a column holds numbers that are not all whole (a score, not a label)."""
    num = pd.to_numeric(values, errors="coerce")
    return bool(num.notna().all() and (num != num.round()).any())
