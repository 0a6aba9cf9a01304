"""The coded table's column names as infer reads and writes them, in one place, so that a
rename of the output schema is a one-line change here."""

from __future__ import annotations

from ..results import column_slug

#: the label a row gets when its answer names no category
INVALID = "invalid"
#: the column `textcoder sample` adds: each row's probability of being drawn
SAMPLE_PROB = "sample_prob"
#: the column `textcoder sample --mark` adds: whether the row was drawn
SAMPLED = "sampled"


def label_column(variable: str) -> str:
    """The column holding the model's label for `variable`."""
    return variable


def prob_column(variable: str, label: str) -> str:
    """The column holding the model's probability of `label` for `variable`."""
    return f"{variable}_p_{column_slug(label)}"


def prob_prefix(variable: str) -> str:
    """What every probability column of `variable` starts with."""
    return f"{variable}_p_"


def other_column(variable: str) -> str:
    """The column holding the mass on answers that name no category."""
    return f"{variable}_p_other"
