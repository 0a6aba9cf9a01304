"""The human codes as a table: every sample row, with each coder's codes, the majority code and
whether the coders tied, per variable, then each coder's notes and `unsure` marks. Where the
coders tied, the majority code is the admin's resolution, if any (the tie stays marked).

For spreadsheets (CSV, TSV, Excel) a cell that a spreadsheet would run as a formula gets a
leading `'` (OWASP's rule), except the ids and codes, which must join back unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codebook import Codebook, Variable
from ..evaluate.columns import (
    coder_column,
    human_column,
    label_column,
    note_column,
    tie_column,
    unsure_column,
)
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
    resolutions = store.resolutions()
    cols: dict[str, list[object]] = {}
    for var in book.variables:
        by = coder_codes(var, codes.get(var.name, {}), states)
        for coder in coders:
            mine = by.get(coder, {})
            cols[coder_column(var.name, coder)] = [mine.get(i, "") for i in sample.ids]
        human, tie = [], []
        resolved = resolutions.get(var.name, {})
        for item in sample.ids:
            code, tied = majority(var, [by[c][item] for c in coders if item in by.get(c, {})])
            human.append(resolved.get(item, "") if tied else code)
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


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SPREADSHEET_FORMATS = ("csv", "tsv", "excel")


def defuse(value: object) -> object:
    """`'=HYPERLINK(...)` for `=HYPERLINK(...)`: a spreadsheet shows it as text."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def for_spreadsheet(
    frame: pd.DataFrame, book: Codebook, sample: Sample, coders: list[str]
) -> pd.DataFrame:
    """The export with every text cell that begins like a formula defused, except the id
    column and the code columns (category labels, checked against the codebook)."""
    keep = {sample.id_column}
    for var in book.variables:
        keep |= {label_column(var.name), human_column(var.name)}
        keep |= {coder_column(var.name, c) for c in coders}
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = frame.copy()
    for col in out.columns:
        if col not in keep and (is_object_dtype(out[col]) or is_string_dtype(out[col])):
            out[col] = out[col].map(defuse)
    return out
