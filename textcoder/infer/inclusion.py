"""Each row's inclusion probability in the human-coded sample, from `sample_prob`, checked,
and adjusted for drawn rows left without a human code (missing at random within their
stratum), so that a drawn-but-uncoded row is never mistaken for one never drawn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._exceptions import DataError
from . import columns as col

Missing = Literal["adjust", "refuse"]
MISSING_CHOICES: tuple[Missing, ...] = ("adjust", "refuse")
#: how the output names the adjustment for drawn rows without a code
MAR = "missing at random within the stratum"

#: a rescaling of sample_prob by more than this share is said (a random sample size moves a bit)
RESCALE_NOTED = 0.01

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Design:
    """The inclusion probabilities the estimators use, and what was done to get them."""

    pi: Floats
    equal: bool  # every coded row has the same probability (a simple random sample)
    drawn: int | None  # rows known to be drawn (None: the table does not say)
    missing: int  # drawn rows without a human code
    handling: str  # how those rows were treated

    def summary(self) -> dict[str, Any]:
        return {
            "drawn": self.drawn,
            "coded": None if self.drawn is None else self.drawn - self.missing,
            "missing_codes": self.missing,
            "handling": self.handling,
        }


def read_probabilities(df: pd.DataFrame, where: str) -> Floats | None:
    """`sample_prob` as numbers (NaN where empty), or None without the column; a value
    outside (0, 1] is an error naming the row."""
    if col.SAMPLE_PROB not in df.columns:
        return None
    pi = pd.to_numeric(df[col.SAMPLE_PROB], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isnan(pi) & ((pi <= 0) | (pi > 1)))
    if bad.size:
        raise DataError(
            f"{where}: row {bad[0] + 1}: {col.SAMPLE_PROB} {pi[bad[0]]:g} is not in (0, 1] "
            "(a row that cannot be drawn has no design-based estimate)"
        )
    return pi


def inclusion(
    df: pd.DataFrame,
    r: Mask,
    drawn: Mask | None,
    warnings: list[str],
    where: str,
    missing: Missing = "adjust",
) -> Design:
    """The design of the coded rows `r`: from `sample_prob` (a simple random sample where
    there is none), with drawn rows lacking a code refused or adjusted for (`missing`)."""
    n, total = int(r.sum()), len(r)
    pi = read_probabilities(df, where)
    if drawn is not None:
        drawn = drawn | r
    lacking = np.zeros(total, dtype=bool) if drawn is None else drawn & ~r
    n_drawn = None if drawn is None else int(drawn.sum())
    if lacking.any() and missing == "refuse":
        first = int(np.flatnonzero(lacking)[0])
        raise DataError(
            f"{where}: {int(lacking.sum())} of {n_drawn} drawn rows have no human code "
            f"(first: row {first + 1}); code them (ties from annotate: a third coder or "
            "the admin's adjudication), or use --missing-codes adjust"
        )
    handling = "none missing" if drawn is not None else "drawn rows not marked"
    if pi is None or np.isnan(pi[r]).any():
        if pi is None:
            warnings.append(f"no {col.SAMPLE_PROB} column: a simple random sample is assumed")
        else:
            k = int(np.isnan(pi[r]).sum())
            warnings.append(
                f"{k} human codes have no {col.SAMPLE_PROB}: a simple random sample is assumed"
            )
        pi = np.full(total, n / total)
        if lacking.any():
            handling = MAR
            _warn_missing(warnings, int(lacking.sum()), n_drawn or 0, "the whole sample")
        return Design(pi, True, n_drawn, int(lacking.sum()), handling)
    if drawn is not None:
        if lacking.any():
            pi = adjust(df, pi, r, drawn, where)
            handling = MAR
            _warn_missing(warnings, int(lacking.sum()), n_drawn or 0, "its stratum")
    elif not np.isnan(pi).any() and pi.sum() > 0:
        scale = n / pi.sum()  # as R's dsl: mean(pi) = n / N
        if abs(scale - 1) > RESCALE_NOTED:
            warnings.append(
                f"{col.SAMPLE_PROB} sums to {pi.sum():.1f} but {n} rows are coded: "
                f"probabilities scaled by {scale:.3f} to sum to the coded rows, as R's dsl "
                "does (drawn rows without a code count as missing at random); mark drawn "
                f"rows with {col.SAMPLED!r} to adjust within strata"
            )
        if scale < 1 - 1e-9:
            handling = "missing at random over the whole sample"
        pi = pi * scale
    equal = bool(np.ptp(pi[r]) <= 1e-9 * max(float(pi[r].max()), 1e-12))
    return Design(pi, equal, n_drawn, int(lacking.sum()), handling)


def strata(df: pd.DataFrame, pi: Floats) -> npt.NDArray[np.object_]:
    """Each row's stratum: `sample_stratum` where the table has it, else its `sample_prob`
    (rows drawn with the same probability)."""
    if col.SAMPLE_STRATUM in df.columns:
        return df[col.SAMPLE_STRATUM].astype(str).to_numpy(dtype=object)
    return np.array([f"{p:.12g}" for p in pi], dtype=object)


def adjust(df: pd.DataFrame, pi: Floats, r: Mask, drawn: Mask, where: str) -> Floats:
    """The coded rows' probabilities times the coded share of their stratum's drawn rows:
    the probability of being drawn and coded, if codes are missing at random within it."""
    keys = strata(df, pi)
    out = pi.copy()
    for key in np.unique(keys[drawn]):
        inside = drawn & (keys == key)
        coded = int((inside & r).sum())
        if coded == 0:
            raise DataError(
                f"{where}: no drawn row of stratum {key!r} has a human code, so nothing "
                "speaks for its rows; code at least one of them"
            )
        out[inside] = pi[inside] * coded / int(inside.sum())
    return out


def _warn_missing(warnings: list[str], k: int, n_drawn: int, within: str) -> None:
    warnings.append(
        f"{k} of {n_drawn} drawn rows have no human code: each is assumed {MAR} "
        f"(a coded row's {col.SAMPLE_PROB} is scaled by the coded share of {within}); "
        "resolve ties in annotate (a third coder or the admin's adjudication) to avoid "
        "the assumption, or --missing-codes refuse"
    )
