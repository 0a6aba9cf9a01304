"""The coded table's column names as infer reads and writes them: one place, over the
output schema (`textcoder.output`), plus the two columns the sampling design adds."""

from __future__ import annotations

from .. import output
from ..output import slug

__all__ = ["SAMPLED", "SAMPLE_PROB", "SAMPLE_STRATUM", "slug"]

#: the column `textcoder sample` adds: each row's probability of being drawn
SAMPLE_PROB = "sample_prob"
#: the column `textcoder sample --mark` adds: whether the row was drawn
SAMPLED = "sampled"
#: the column `textcoder sample` adds for a stratified or uncertainty design: the stratum a
#: drawn row's missing code is assumed missing at random within
SAMPLE_STRATUM = "sample_stratum"
#: what textcoder 0.1 called the mass outside the scheme (now `V_outside`)
LEGACY_OUTSIDE = "p_other"


def label_column(variable: str) -> str:
    """The column holding the model's label for `variable`."""
    return variable


def prob_column(variable: str, label: str) -> str:
    """The column holding the model's probability of `label` for `variable`."""
    return output.prob_column(variable, label)


def prob_prefix(variable: str) -> str:
    """What every category probability column of `variable` starts with."""
    return output.prob_column(variable, "x")[: -len("x")]


def outside_columns(variable: str) -> tuple[str, str]:
    """The mass on answers naming no category: `V_outside`, and textcoder 0.1's `V_p_other`."""
    return output.column(variable, output.OUTSIDE), f"{variable}_{LEGACY_OUTSIDE}"
