"""Reading and writing the tables researchers use: CSV, TSV, JSONL, Parquet, Excel.

Large tables are read and written in chunks (`iter_table`, `TableWriter`), so coding a
million rows needs memory for a chunk, not for the table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ._exceptions import DataError, UsageError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
}


def table_format(path: str | Path) -> str:
    """The table format a file name's extension names."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown table format {suffix or '(none)'!r}; use one of {known}")
    return FORMATS[suffix]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table; CSV and TSV cells are kept as written (strings, "" for empty, no NA guessing)."""
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        if fmt in ("csv", "tsv"):
            return pd.read_csv(
                p, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False
            )
        if fmt == "jsonl":
            return pd.read_json(p, lines=True, dtype=False)
        if fmt == "parquet":
            return pd.read_parquet(p)
        return pd.read_excel(p, dtype=str, keep_default_na=False)
    except ImportError as exc:
        raise DataError(f"{p}: reading {fmt} needs an extra package: {exc}") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: cannot read as {fmt}: {first}") from None


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a table in the format its extension names, via a temporary file then a rename."""
    p = Path(path)
    fmt = table_format(p)
    tmp = temporary_path(p)
    try:
        if fmt in ("csv", "tsv"):
            df.to_csv(tmp, sep="\t" if fmt == "tsv" else ",", index=False)
        elif fmt == "jsonl":
            df.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_excel(tmp, index=False, engine="openpyxl")
        tmp.replace(p)
    except ImportError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{p}: writing {fmt} needs an extra package: {exc}") from None


#: rows per chunk when a table is streamed
CHUNK_ROWS = 10_000


def _cannot_read(p: Path, fmt: str, exc: Exception) -> DataError:
    if isinstance(exc, ImportError):
        return DataError(f"{p}: reading {fmt} needs an extra package: {exc}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{p}: cannot read as {fmt}: {first}")


def temporary_path(path: Path) -> Path:
    """Where a table is written before it is renamed into place: one file per process, so
    two processes writing one output never remove each other's file."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def table_columns(path: str | Path) -> list[str]:
    """A table's column names, reading as little of it as the format allows."""
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(p).schema_arrow.names)
        except (ImportError, ValueError, OSError) as exc:
            raise _cannot_read(p, fmt, exc) from None
    for chunk in iter_table(p, chunksize=1):
        return [str(c) for c in chunk.columns]
    if fmt in ("csv", "tsv"):  # a header and no rows
        return [str(c) for c in read_table(p).columns]
    return []


def iter_table(
    path: str | Path, chunksize: int = CHUNK_ROWS, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A table in chunks of `chunksize` rows (index: the row positions), read as `read_table` does.

    `columns` keeps only those columns (and reads only those where the format allows).
    """
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    cols = list(columns) if columns is not None else None
    start = 0
    try:
        chunks: Any
        if fmt in ("csv", "tsv"):
            chunks = pd.read_csv(
                p,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                chunksize=chunksize,
                usecols=cols,
            )
        elif fmt == "jsonl":
            chunks = pd.read_json(p, lines=True, dtype=False, chunksize=chunksize)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(p).iter_batches(batch_size=chunksize, columns=cols)
            chunks = (b.to_pandas() for b in batches)
        else:
            whole = read_table(p)
            chunks = (whole.iloc[i : i + chunksize] for i in range(0, len(whole), chunksize))
        for chunk in chunks:
            if cols is not None and fmt == "jsonl":
                missing = [c for c in cols if c not in chunk.columns]
                if missing:
                    raise DataError(f"{p}: no column {missing[0]!r}")
                chunk = chunk[cols]
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk
    except (ImportError, ValueError, OSError, pd.errors.ParserError) as exc:
        raise _cannot_read(p, fmt, exc) from None


class TableWriter:
    """Writes a table chunk by chunk to a temporary file, renamed into place by `close`.

    CSV, TSV, JSONL and Parquet are appended as chunks come; Excel is written at the end.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        self.tmp = temporary_path(self.path)
        self.rows = 0
        self._handle: IO[str] | None = None
        self._parquet: Any = None
        self._schema: Any = None
        self._frames: list[pd.DataFrame] = []

    def write(self, df: pd.DataFrame) -> None:
        """Append rows (every chunk must have the same columns)."""
        fmt = self.format
        try:
            if fmt in ("csv", "tsv", "jsonl"):
                first = self._handle is None
                if self._handle is None:
                    self._handle = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
                if fmt == "jsonl":
                    if len(df):
                        text = df.to_json(orient="records", lines=True, force_ascii=False)
                        self._handle.write(text if text.endswith("\n") else text + "\n")
                else:
                    df.to_csv(
                        self._handle, sep="\t" if fmt == "tsv" else ",", index=False, header=first
                    )
            elif fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                if self._parquet is None:
                    schema = pa.Schema.from_pandas(df, preserve_index=False)
                    for i, f in enumerate(schema):  # an all-empty first chunk must not fix "null"
                        if pa.types.is_null(f.type):
                            schema = schema.set(i, pa.field(f.name, pa.string()))
                    self._schema = schema.remove_metadata()
                    self._parquet = pq.ParquetWriter(self.tmp, self._schema)
                table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
                self._parquet.write_table(table)
            else:
                self._frames.append(df)
        except ImportError as exc:
            self.abort()
            raise DataError(f"{self.path}: writing {fmt} needs an extra package: {exc}") from None
        self.rows += len(df)

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self.format == "excel":
            frame = pd.concat(self._frames) if self._frames else pd.DataFrame()
            self._frames = []
            try:
                frame.to_excel(self.tmp, index=False, engine="openpyxl")
            except ImportError as exc:
                raise DataError(
                    f"{self.path}: writing excel needs an extra package: {exc}"
                ) from None
        self._close_handles()
        if not self.tmp.exists():
            self.tmp.touch()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        """Drop the temporary file; the output path is left as it was."""
        self._close_handles()
        self.tmp.unlink(missing_ok=True)

    def _close_handles(self) -> None:
        """Close the open text file or Parquet writer, if any."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None


def default_output(data: str | Path) -> Path:
    """`tweets.csv` -> `tweets.coded.csv`, beside the input."""
    p = Path(data)
    return p.with_name(f"{p.stem}.coded{p.suffix}")


def check_output(data: str | Path, out: str | Path) -> None:
    """Refuse an output path that would overwrite the input."""
    if Path(out).resolve() == Path(data).resolve():
        raise UsageError(f"{out}: the output would overwrite the input; choose another -o")
