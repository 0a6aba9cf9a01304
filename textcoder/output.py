"""The output table's one column schema: every column name a coded table has is built here.

Results, calibration, evaluate, infer and the report all read names from this module, so a
category label can never take a reserved name: categories live only in `V_p_<slug>` (and
`V_rawp_<slug>` once calibrated); every other per-variable column is `V_<kind>` with a fixed
kind; and the label of an answer that names no category is `INVALID`, which no category may be.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

#: the label of an answer that names no category (and of an empty text); angle brackets keep
#: it apart from every label a codebook may use (the codebook refuses this one)
INVALID = "<invalid>"
#: labels that earlier versions wrote for the same thing, read as `INVALID` from old stores
LEGACY_INVALID = "invalid"

#: the per-variable columns besides the label and the category probabilities, in table order
OUTSIDE, CONFIDENCE, ENTROPY = "outside", "confidence", "entropy"
EXPECTED, MEDIAN = "expected", "median"
RAW, FALLBACK, ERROR = "raw", "fallback", "error"
#: the kinds a variable's columns can have after its name (`V_<kind>`); reserved
RESERVED_KINDS = (OUTSIDE, CONFIDENCE, ENTROPY, EXPECTED, MEDIAN, "n", RAW, FALLBACK, ERROR)


class VariableLike(Protocol):
    """What the schema needs of a variable (`codebook.Variable` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def labels(self) -> list[str]: ...

    @property
    def scale(self) -> str: ...

    @property
    def multi(self) -> bool: ...


@lru_cache(maxsize=4096)  # the same few labels on every row of a run
def slug(label: str) -> str:
    """A category label as it appears in a column name: spaces and punctuation become `_`."""
    return re.sub(r"[^\w]+", "_", label.strip()).strip("_") or "blank"


def prob_column(variable: str, label: str, kind: str = "p") -> str:
    """`V_p_<slug>`: a category's probability (`kind="rawp"`: before calibration)."""
    return f"{variable}_{kind}_{slug(label)}"


def prob_columns(variable: VariableLike, kind: str = "p") -> list[str]:
    """Every category's probability column, codebook order."""
    return [prob_column(variable.name, lab, kind) for lab in variable.labels]


def column(variable: str, kind: str) -> str:
    """`V_<kind>` for one of `RESERVED_KINDS` (e.g. `V_outside`, `V_error`)."""
    return f"{variable}_{kind}"


def has_summary(variable: VariableLike) -> bool:
    """Whether the variable gets `V_expected` and `V_median` (ordinal, one label)."""
    return variable.scale == "ordinal" and not variable.multi


def variable_columns(variable: VariableLike, extra: Sequence[str] = ()) -> list[str]:
    """The output columns of one variable, in order; `extra`: a scorer's own kinds (`n`)."""
    v = variable.name
    cols = [v, *prob_columns(variable), column(v, OUTSIDE), column(v, CONFIDENCE)]
    cols.append(column(v, ENTROPY))
    if has_summary(variable):
        cols += [column(v, EXPECTED), column(v, MEDIAN)]
    cols += [column(v, k) for k in extra]
    return [*cols, column(v, RAW), column(v, FALLBACK), column(v, ERROR)]


def label_problem(label: str) -> str | None:
    """Why a category label cannot be used, or None: only the invalid marker is refused."""
    if label.strip().lower() in (INVALID, "<invalid"):
        return f"{label!r} is reserved (textcoder's label for answers that name no category)"
    return None


def column_clashes(variables: Sequence[VariableLike]) -> list[str]:
    """Two columns of the schema with one name (categories that slug alike, a variable named
    like another's column): one message per clash, naming both."""
    owner: dict[str, str] = {}
    problems: list[str] = []
    for var in variables:
        cats = set(prob_columns(var))
        named = [
            (col, f"variable {var.name!r}")
            for col in variable_columns(var, extra=("n",))
            if col not in cats
        ]
        named += [
            (prob_column(var.name, lab, kind), f"category {lab!r} of {var.name!r}")
            for lab in var.labels
            for kind in ("p", "rawp")
        ]
        for col, who in named:
            if col in owner and owner[col] != who:
                problems.append(f"{who} and {owner[col]} both make the column {col!r}")
            owner.setdefault(col, who)
    return problems


def is_invalid(label: object) -> bool:
    """Whether an output label marks an answer that named no category."""
    return isinstance(label, str) and label == INVALID


#: digits the display columns of a written table keep by default (the store keeps answers whole)
DISPLAY_DIGITS = 4


def display_columns(variable: VariableLike) -> list[str]:
    """The columns of real numbers a reader looks at: probabilities (raw and calibrated), the
    outside mass, confidence, entropy and the expected position."""
    v = variable.name
    kinds = [OUTSIDE, CONFIDENCE, ENTROPY, *([EXPECTED] if has_summary(variable) else [])]
    return [
        *prob_columns(variable),
        *prob_columns(variable, "rawp"),
        *(column(v, k) for k in kinds),
    ]


def round_display(frame: Any, variables: Sequence[VariableLike], digits: int | None) -> Any:
    """`frame` (a DataFrame) with its display columns rounded to `digits` (None: as they are)."""
    if digits is None:
        return frame
    cols = [c for var in variables for c in display_columns(var) if c in frame.columns]
    return frame.round({c: digits for c in cols})
