"""A coded text (one result per variable) and its flattening into output-table columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import output as out
from .codebook import Codebook
from .scoring.result import VariableResult, ordinal_summary


@dataclass(frozen=True)
class CodeResult(Mapping[str, VariableResult]):
    """The codes for one text: a mapping of variable name to its `VariableResult`.

    For a one-variable codebook, `label`, `probs`, `raw_probs`, `raw` and `other` read that
    variable.
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
    def raw_probs(self) -> dict[str, float] | None:
        """The model's own probabilities where `probs` are calibrated, else None."""
        return self._only().raw_probs

    @property
    def error(self) -> str | None:
        return self._only().error


def result_row(codebook: Codebook, result: CodeResult, extra: Sequence[str] = ()) -> dict[str, Any]:
    """One output row's coded columns (names from `output`); `extra`: the scorer's kinds."""
    row: dict[str, Any] = {}
    for var in codebook.variables:
        r = result[var.name]
        v = var.name
        row[v] = r.label
        for lab, col in zip(var.labels, out.prob_columns(var), strict=True):
            row[col] = r.probs.get(lab, 0.0)
        row[out.column(v, out.OUTSIDE)] = r.other
        row[out.column(v, out.CONFIDENCE)] = r.confidence
        row[out.column(v, out.ENTROPY)] = r.entropy
        if out.has_summary(var):
            expected, median = ordinal_summary(r.probs, var.labels)
            row[out.column(v, out.EXPECTED)] = expected
            row[out.column(v, out.MEDIAN)] = median if median else None
        for kind in extra:
            row[out.column(v, kind)] = r.extra.get(kind)
        row[out.column(v, out.RAW)] = r.raw
        row[out.column(v, out.FALLBACK)] = bool(r.extra.get("fallback", False))
        row[out.column(v, out.ERROR)] = r.error or ""
    return row


def coded_columns(codebook: Codebook, extra: Sequence[str] = ()) -> list[str]:
    """Every coded column of a table, in order."""
    return [c for var in codebook.variables for c in out.variable_columns(var, extra)]


def result_columns(
    codebook: Codebook, results: Sequence[CodeResult], extra: Sequence[str] = ()
) -> dict[str, list[Any]]:
    """The coded columns for many results, column by column."""
    cols: dict[str, list[Any]] = {n: [] for n in coded_columns(codebook, extra)}
    for res in results:
        for k, val in result_row(codebook, res, extra).items():
            cols[k].append(val)
    return cols


def with_codes(
    frame: Any, codebook: Codebook, results: Sequence[CodeResult], extra: Sequence[str] = ()
) -> Any:
    """`frame` (a DataFrame, one row per result) with the coded columns appended; input
    columns of the same names are replaced."""
    import pandas as pd

    coded = pd.DataFrame(result_columns(codebook, results, extra), index=frame.index)
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
        extra: Sequence[str],
        emit: Callable[[Any], None],
        empty: Any = None,
    ) -> None:
        self._chunks = chunks
        self.codebook = codebook
        self.extra = tuple(extra)
        self._emit = emit
        self._waiting: dict[int, CodeResult] = {}
        self._done: list[CodeResult] = []
        self._chunk: Any = None
        self.rows = 0  # rows emitted so far
        #: the table's header as an empty frame, for a table with no rows
        self._empty: Any = empty

    def add(self, index: int, result: CodeResult) -> None:
        """The result of row `index` (counted from 0 over the whole table)."""
        self._waiting[index] = result
        while self.rows + len(self._done) in self._waiting:
            self._done.append(self._waiting.pop(self.rows + len(self._done)))
            if self._chunk is None:
                self._chunk = next(self._chunks, None)
                if self._chunk is None:
                    raise RuntimeError(f"a result for row {index}, past the table's end")
            if len(self._done) == len(self._chunk):
                self._flush()

    def _flush(self) -> None:
        chunk, results = self._chunk, self._done
        self._emit(with_codes(chunk, self.codebook, results, self.extra))
        self.rows += len(results)
        self._chunk, self._done = None, []

    def finish(self) -> None:
        """Check that every row of the table was emitted; a table with no rows is emitted
        as its header with the coded columns."""
        if self._waiting or self._done or any(len(c) for c in self._chunks):
            raise RuntimeError(f"only {self.rows} rows of the table have their results")
        if self.rows == 0 and self._empty is not None:
            self._emit(with_codes(self._empty, self.codebook, [], self.extra))
