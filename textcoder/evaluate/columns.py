"""The coded table's column names as evaluate and annotate read them, and the human-code
columns annotate exports, in one place: the coded columns come from `textcoder.output`,
the one column schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import output
from ..output import INVALID, LEGACY_INVALID

__all__ = [
    "INVALID",
    "LEGACY_INVALID",
    "coder_column",
    "human_column",
    "label_column",
    "note_column",
    "other_column",
    "prob_column",
    "prob_prefix",
    "tie_column",
    "unsure_column",
]


def label_column(variable: str) -> str:
    """The column holding the model's label for `variable`."""
    return variable


def prob_prefix(variable: str) -> str:
    """What every category probability column of `variable` begins with (`V_p_`)."""
    return output.prob_column(variable, "x")[: -len("x")]


def prob_column(variable: str, label: str) -> str:
    """The column holding the probability of category `label`."""
    return output.prob_column(variable, label)


def other_column(variable: str, columns: Sequence[str] = ()) -> str:
    """The column holding the mass outside the scheme (`V_outside`; in a table of textcoder
    0.1, which `columns` shows by lacking it, `V_p_other`)."""
    current = output.column(variable, output.OUTSIDE)
    legacy = prob_prefix(variable) + "other"
    return legacy if current not in columns and legacy in columns else current


def coder_column(variable: str, coder: str) -> str:
    """The export's column holding one coder's codes for `variable`."""
    return f"{variable}_by_{coder}"


def human_column(variable: str) -> str:
    """The export's column holding the coders' majority code (empty on a tie)."""
    return f"{variable}_human"


def tie_column(variable: str) -> str:
    """The export's column saying the coders tied (so `human_column` is empty)."""
    return f"{variable}_tie"


def note_column(coder: str) -> str:
    """The export's column holding one coder's notes on the texts."""
    return f"note_by_{coder}"


def unsure_column(coder: str) -> str:
    """The export's column saying a coder marked a text unsure."""
    return f"unsure_by_{coder}"
