"""A run's input rows: (row id, text) read chunk by chunk, checked before anything is sent."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from ._exceptions import DataError
from .output import INVALID
from .tables import iter_table, table_columns


def scan_rows(
    data: str | Path,
    text_column: str,
    id_column: str | None,
    chunksize: int,
    warn: Callable[[str], None] | None,
) -> int:
    """Check the columns and ids before anything is sent; count rows, report empty texts."""
    columns = table_columns(data)
    for col, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
        if col is not None and col not in columns:
            raise DataError(
                f"{data}: no column {col!r} (columns: {', '.join(columns)}); choose one with {flag}"
            )
    hashes = array("q")  # 8 bytes an id: a set of a million id strings is ~90 MB
    total = empty = 0
    for row_id, text in table_rows(data, text_column, id_column, chunksize):
        total += 1
        if id_column is not None:
            hashes.append(hash(row_id))
        if not text.strip():
            empty += 1
            if warn is not None and empty <= 10:
                row = f"id {row_id!r}" if id_column is not None else f"row {row_id}"
                warn(f"{data}: {row}: empty text, coded '{INVALID}'")
    if warn is not None and empty > 10:
        warn(f"{data}: {empty} empty texts in all, coded '{INVALID}'")
    if id_column is not None:
        _check_ids(data, id_column, text_column, chunksize, hashes)
    return total


def _check_ids(
    data: str | Path, id_column: str, text_column: str, chunksize: int, hashes: array[int]
) -> None:
    """Raise on the first id that repeats: hashes that repeat are found by sorting, then
    the rows with those hashes are read again to compare the ids themselves."""
    import numpy as np

    h = np.sort(np.frombuffer(hashes, dtype=np.int64))
    twice = set(h[1:][h[1:] == h[:-1]].tolist())
    if not twice:
        return
    seen: set[str] = set()
    for row_id, _ in table_rows(data, text_column, id_column, chunksize):
        if hash(row_id) in twice:
            if row_id in seen:
                raise DataError(f"{data}: column {id_column!r} repeats the id {row_id!r}")
            seen.add(row_id)


def table_rows(
    data: str | Path, text_column: str, id_column: str | None, chunksize: int
) -> Iterator[tuple[str, str]]:
    """(row id, text) for every row, read chunk by chunk."""
    cols = list(dict.fromkeys(c for c in (text_column, id_column) if c is not None))
    for chunk in iter_table(data, chunksize, columns=cols):
        yield from _chunk_rows(data, chunk, text_column, id_column)


class TableStream:
    """One parse of a table for a run: `rows()` gives (row id, text) to send, and each chunk
    it read waits in `chunks` (an iterator) until the output takes it, so the rows sent and
    the rows written come from the same parse."""

    def __init__(
        self, data: str | Path, text_column: str, id_column: str | None, chunksize: int
    ) -> None:
        self.data, self.text_column, self.id_column = data, text_column, id_column
        self.chunksize = chunksize
        self._read: deque[pd.DataFrame] = deque()
        #: the chunks read and not yet taken, oldest first
        self.chunks: Iterator[pd.DataFrame] = _Drain(self._read)

    def rows(self) -> Iterator[tuple[str, str]]:
        for chunk in iter_table(self.data, self.chunksize):
            self._read.append(chunk)
            yield from _chunk_rows(self.data, chunk, self.text_column, self.id_column)


class _Drain(Iterator[pd.DataFrame]):
    """Takes from a deque that fills later: empty now is not exhausted for good."""

    def __init__(self, queue: deque[pd.DataFrame]) -> None:
        self.queue = queue

    def __next__(self) -> pd.DataFrame:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


def _chunk_rows(
    data: str | Path, chunk: pd.DataFrame, text_column: str, id_column: str | None
) -> Iterator[tuple[str, str]]:
    """(row id, text) pairs of one chunk; the row id is the id column's value as written
    (a missing one is an error naming its line), else the row number counted from 1."""
    texts = chunk[text_column].tolist()
    if id_column is None:
        ids = [str(i + 1) for i in chunk.index]
    else:
        values = chunk[id_column]
        gaps = values.isna() | (values.astype(str).str.strip() == "")
        if gaps.any():
            pos = int(gaps.to_numpy().argmax())
            raise DataError(f"{data}: {_where(chunk, pos)}: no id in column {id_column!r}")
        ids = [str(i) for i in values.tolist()]
    for row_id, text in zip(ids, texts, strict=True):
        yield row_id, "" if missing(text) else str(text)


def _where(chunk: pd.DataFrame, pos: int) -> str:
    """Where row `pos` of a chunk is in its file: the line where the reader knows it, else
    the row counted from 1 (a CSV text may span lines)."""
    lines = chunk.attrs.get("lines")
    if lines is not None:
        return f"line {lines[pos]}"
    return f"row {chunk.index[pos] + 1}"


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
