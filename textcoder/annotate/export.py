"""The human codes as a table: every sample row, with each coder's codes, the majority code and
whether the coders tied, per variable, then each coder's notes and `unsure` marks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codebook import Codebook, Variable
from ..evaluate.columns import coder_column, human_column, note_column, tie_column, unsure_column
from .agreement import majority
from .sample import Sample
from .store import DONE, HumanStore, ItemState

if TYPE_CHECKING:
    import pandas as pd


def coder_codes(
    var: Variable, store_codes: dict[str, dict[str, str]], states: dict[str, dict[str, ItemState]]
) -> dict[str, dict[str, str]]:
    """coder -> text -> code for one variable. A multi-label variable's empty choice counts as
    a code (none of the categories) only once the coder moved on from the text."""
    if not var.multi:
        return store_codes
    return {
        coder: {
            item: value
            for item, value in mine.items()
            if value or states.get(coder, {}).get(item, ItemState()).status == DONE
        }
        for coder, mine in store_codes.items()
    }


def human_columns(book: Codebook, sample: Sample, store: HumanStore) -> dict[str, list[object]]:
    """The export's added columns, in order, one value per sample row."""
    coders = store.coders()
    codes = store.all_codes()
    states = store.all_states()
    cols: dict[str, list[object]] = {}
    for var in book.variables:
        by = coder_codes(var, codes.get(var.name, {}), states)
        for coder in coders:
            mine = by.get(coder, {})
            cols[coder_column(var.name, coder)] = [mine.get(i, "") for i in sample.ids]
        human, tie = [], []
        for item in sample.ids:
            code, tied = majority(var, [by[c][item] for c in coders if item in by.get(c, {})])
            human.append(code)
            tie.append(tied)
        cols[human_column(var.name)] = list(human)
        cols[tie_column(var.name)] = list(tie)
    for coder in coders:
        mine_s = states.get(coder, {})
        cols[note_column(coder)] = [mine_s.get(i, ItemState()).note for i in sample.ids]
        cols[unsure_column(coder)] = [mine_s.get(i, ItemState()).unsure for i in sample.ids]
    return cols


def export_frame(book: Codebook, sample: Sample, store: HumanStore) -> pd.DataFrame:
    """Every sample row (its own columns first) with the human codes appended; sample columns
    of the same names are replaced."""
    import pandas as pd

    added = pd.DataFrame(human_columns(book, sample, store), index=sample.frame.index)
    frame = sample.frame.drop(columns=[c for c in added.columns if c in sample.frame.columns])
    return pd.concat([frame, added], axis=1)
