"""Reading and writing the tables researchers use: CSV, TSV, JSONL, Parquet, Excel.

Large tables are read and written in chunks (`iter_table`, `TableWriter`), so coding a
million rows needs memory for a chunk, not for the table.
"""

from __future__ import annotations

import glob
import json
import os
import re
import warnings
import zipfile
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
    """Read a table; CSV and TSV cells are kept as written (strings, "" for empty, no NA guessing),
    parsed as `iter_table` parses them (a malformed row is an error naming its line)."""
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if fmt in ("csv", "tsv", "jsonl"):
        chunks = list(iter_table(p))
        if chunks:
            return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
        return pd.DataFrame(columns=table_columns(p))
    try:
        if fmt == "parquet":
            return pd.read_parquet(p)
        return pd.read_excel(p, dtype=str, keep_default_na=False)
    except (ImportError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise _cannot_read(p, fmt, exc) from None


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
    if isinstance(exc, UnicodeDecodeError):
        line = _undecodable_line(p)
        where = f"line {line}: " if line is not None else ""
        return DataError(f"{p}: {where}not UTF-8 text ({exc.reason}); save the file as UTF-8")
    if isinstance(exc, KeyError | zipfile.BadZipFile):  # a zip that is not a workbook
        return DataError(f"{p}: cannot read as {fmt}: not an Excel workbook")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", first)
    if fields:
        want, at, got = fields.groups()
        return DataError(
            f"{p}: line {at}: {got} fields where the header has {want} "
            "(quote a text that holds the separator)"
        )
    return DataError(f"{p}: cannot read as {fmt}: {first}")


def _undecodable_line(p: Path) -> int | None:
    """The first line of `p` that is not UTF-8 (read again only when reading failed)."""
    with p.open("rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


def temporary_path(path: Path) -> Path:
    """Where a table is written before it is renamed into place: one file per process, so
    two processes writing one output never remove each other's file."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def remove_stale_temporaries(path: Path) -> None:
    """Remove the `OUT.<pid>.tmp` files of processes that are gone (a run killed while
    writing leaves its file; a live run's is kept)."""
    for tmp in path.parent.glob(glob.escape(path.name) + ".*.tmp"):
        pid = tmp.name[len(path.name) + 1 : -len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


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
    if fmt in ("csv", "tsv"):
        try:
            header = pd.read_csv(p, sep="\t" if fmt == "tsv" else ",", dtype=str, nrows=0)
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise _cannot_read(p, fmt, exc) from None
        return [str(c) for c in header.columns]
    for chunk in iter_table(p, chunksize=1):
        return [str(c) for c in chunk.columns]
    return []


def iter_table(
    path: str | Path, chunksize: int = CHUNK_ROWS, columns: Sequence[str] | None = None
) -> Iterator[pd.DataFrame]:
    """A table in chunks of `chunksize` rows (index: the row positions), parsed one way for
    every reader: CSV/TSV cells as written, a row with more fields than the header an error
    naming its line; JSONL numbers as written (an integer id stays exact).

    `columns` keeps only those columns (every row is still parsed whole, so a malformed row
    is found whichever columns are kept).
    """
    p = Path(path)
    fmt = table_format(p)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    cols = list(columns) if columns is not None else None
    start = 0
    try:
        chunks: Iterator[pd.DataFrame]
        if fmt in ("csv", "tsv"):
            chunks = _csv_chunks(p, fmt, chunksize)
        elif fmt == "jsonl":
            chunks = _jsonl_chunks(p, chunksize)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(p).iter_batches(batch_size=chunksize, columns=cols)
            chunks = (b.to_pandas(integer_object_nulls=True) for b in batches)
        else:
            whole = read_table(p)
            chunks = (whole.iloc[i : i + chunksize] for i in range(0, len(whole), chunksize))
        for chunk in chunks:
            if cols is not None and fmt != "parquet":
                missing = [c for c in cols if c not in chunk.columns]
                if missing:
                    raise DataError(f"{p}: no column {missing[0]!r}")
                chunk = chunk[cols]
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk
    except (ImportError, ValueError, OSError, pd.errors.ParserError) as exc:
        raise _cannot_read(p, fmt, exc) from None


def _csv_chunks(p: Path, fmt: str, chunksize: int) -> Iterator[pd.DataFrame]:
    """CSV/TSV chunks, every cell a string as written. `index_col=False`: pandas must never
    take a first row with an extra field as a sign that the first column is an index."""
    reader = pd.read_csv(
        p,
        sep="\t" if fmt == "tsv" else ",",
        dtype=str,
        keep_default_na=False,
        chunksize=chunksize,
        index_col=False,
    )
    with reader:
        while True:
            with warnings.catch_warnings():
                # pandas only warns (and drops the extra field) when the first row is long
                warnings.simplefilter("error", pd.errors.ParserWarning)
                try:
                    chunk = next(reader)
                except StopIteration:
                    return
                except pd.errors.ParserWarning:
                    width = len(table_columns(p))
                    raise DataError(
                        f"{p}: line 2: more fields than the header's {width} "
                        "(quote a text that holds the separator)"
                    ) from None
            yield chunk


def _jsonl_chunks(p: Path, chunksize: int) -> Iterator[pd.DataFrame]:
    """JSONL chunks: one object a line (blank lines skipped), values as JSON gives them, so an
    integer keeps every digit even in a column with nulls. `attrs["lines"]`: each row's line."""
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    with p.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DataError(f"{p}: line {number}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise DataError(f"{p}: line {number}: not a JSON object")
            if "\\ud" in line.lower():
                _check_unicode(p, number, record)
            records.append(record)
            lines.append(number)
            if len(records) == chunksize:
                yield _frame(records, lines)
                records, lines = [], []
    if records:
        yield _frame(records, lines)


def _check_unicode(p: Path, number: int, record: dict[str, Any]) -> None:
    """JSON can spell a lone surrogate (`"\\ud800"`), which is not Unicode: such a text could
    be neither sent as UTF-8 nor written out, so it is refused, naming its line."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(
            f"{p}: line {number}: the text is not valid Unicode (a lone surrogate, "
            f"{exc.object[exc.start]!r}); fix or remove it"
        ) from None


def _frame(records: list[dict[str, Any]], lines: list[int]) -> pd.DataFrame:
    """Records as a frame with each column's type inferred, except that a column of integers
    with gaps stays as written (pandas would make it float and round big ids)."""
    raw = pd.DataFrame(records, dtype=object)
    frame = raw.infer_objects()
    for col in frame.columns:
        if frame[col].dtype.kind == "f" and any(type(v) is int for v in raw[col]):
            frame[col] = raw[col]
    frame.attrs["lines"] = lines
    return frame


class TableWriter:
    """Writes a table chunk by chunk to a temporary file, renamed into place by `close`.

    CSV, TSV, JSONL and Parquet are appended as chunks come; Excel is written at the end.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.format = table_format(self.path)
        remove_stale_temporaries(self.path)
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
