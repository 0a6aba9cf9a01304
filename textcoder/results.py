"""A coded text (one result per variable) and its flattening into output-table columns."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .codebook import Codebook, Variable
from .scoring.result import VariableResult, ordinal_summary


@dataclass(frozen=True)
class CodeResult(Mapping[str, VariableResult]):
    """The codes for one text: a mapping of variable name to its `VariableResult`.

    For a one-variable codebook, `label`, `probs`, `raw` and `other` read that variable.
    """

    variables: dict[str, VariableResult]

    def __getitem__(self, name: str) -> VariableResult:
        return self.variables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def _only(self) -> VariableResult:
        if len(self.variables) != 1:
            names = ", ".join(self.variables)
            raise AttributeError(f"the codebook has several variables ({names}); use result[name]")
        return next(iter(self.variables.values()))

    @property
    def label(self) -> str:
        return self._only().label

    @property
    def probs(self) -> dict[str, float]:
        return self._only().probs

    @property
    def other(self) -> float:
        return self._only().other

    @property
    def raw(self) -> str:
        return self._only().raw

    @property
    def error(self) -> str | None:
        return self._only().error


def column_slug(label: str) -> str:
    """A category label as it appears in a column name: spaces and punctuation become `_`."""
    return re.sub(r"[^\w]+", "_", label.strip()).strip("_") or "blank"


def variable_columns(variable: Variable, scoring: str | None = None) -> list[str]:
    """The output columns for one variable, in order."""
    v = variable.name
    cols = [
        v,
        *(f"{v}_p_{column_slug(lab)}" for lab in variable.labels),
        f"{v}_p_other",
        f"{v}_confidence",
        f"{v}_entropy",
    ]
    if variable.scale == "ordinal" and not variable.multi:
        cols += [f"{v}_expected", f"{v}_median"]
    if scoring == "sample":
        cols.append(f"{v}_n")
    return [*cols, f"{v}_raw", f"{v}_fallback", f"{v}_error"]


def result_row(
    codebook: Codebook, result: CodeResult, scoring: str | None = None
) -> dict[str, Any]:
    """One output row's coded columns."""
    row: dict[str, Any] = {}
    for var in codebook.variables:
        r = result[var.name]
        v = var.name
        row[v] = r.label
        for lab in var.labels:
            row[f"{v}_p_{column_slug(lab)}"] = r.probs.get(lab, 0.0)
        row[f"{v}_p_other"] = r.other
        row[f"{v}_confidence"] = r.confidence
        row[f"{v}_entropy"] = r.entropy
        if var.scale == "ordinal" and not var.multi:
            expected, median = ordinal_summary(r.probs, var.labels)
            row[f"{v}_expected"] = expected
            row[f"{v}_median"] = median if median else None
        if scoring == "sample":
            row[f"{v}_n"] = r.extra.get("n")
        row[f"{v}_raw"] = r.raw
        row[f"{v}_fallback"] = bool(r.extra.get("fallback", False))
        row[f"{v}_error"] = r.error or ""
    return row


def result_columns(
    codebook: Codebook, results: Sequence[CodeResult], scoring: str | None = None
) -> dict[str, list[Any]]:
    """The coded columns for many results, column by column."""
    names = [c for var in codebook.variables for c in variable_columns(var, scoring)]
    cols: dict[str, list[Any]] = {n: [] for n in names}
    for res in results:
        for k, val in result_row(codebook, res, scoring).items():
            cols[k].append(val)
    return cols


def with_codes(
    frame: Any, codebook: Codebook, results: Sequence[CodeResult], scoring: str | None = None
) -> Any:
    """`frame` (a DataFrame, one row per result) with the coded columns appended; input
    columns of the same names are replaced."""
    import pandas as pd

    coded = pd.DataFrame(result_columns(codebook, results, scoring), index=frame.index)
    clash = [c for c in coded.columns if c in frame.columns]
    return pd.concat([frame.drop(columns=clash), coded], axis=1)


class OrderedChunks:
    """Rows' results arrive in any order; the input table's chunks leave in input order, each
    with its coded columns appended, as soon as every row of the chunk has its result.

    Memory holds one input chunk and the results that arrived ahead of their turn (at most
    the rows in flight and the chunk's own), however long the table.
    """

    def __init__(
        self,
        chunks: Iterator[Any],
        codebook: Codebook,
        scoring: str | None,
        emit: Callable[[Any], None],
    ) -> None:
        self._chunks = chunks
        self.codebook = codebook
        self.scoring = scoring
        self._emit = emit
        self._waiting: dict[int, CodeResult] = {}
        self._done: list[CodeResult] = []
        self._chunk: Any = None
        self.rows = 0  # rows emitted so far

    def add(self, index: int, result: CodeResult) -> None:
        """The result of row `index` (counted from 0 over the whole table)."""
        self._waiting[index] = result
        while self.rows + len(self._done) in self._waiting:
            self._done.append(self._waiting.pop(self.rows + len(self._done)))
            if self._chunk is None:
                self._chunk = next(self._chunks)
            if len(self._done) == len(self._chunk):
                self._flush()

    def _flush(self) -> None:
        chunk, results = self._chunk, self._done
        self._emit(with_codes(chunk, self.codebook, results, self.scoring))
        self.rows += len(results)
        self._chunk, self._done = None, []

    def finish(self) -> None:
        """Check that every row of the table was emitted."""
        if self._waiting or self._done or next(self._chunks, None) is not None:
            raise RuntimeError(f"only {self.rows} rows of the table have their results")
