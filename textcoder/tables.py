"""Reading and writing the tables researchers use: CSV, TSV, JSONL, Parquet, Excel."""

from __future__ import annotations

from pathlib import Path

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
    tmp = p.with_name(p.name + ".tmp")
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


def default_output(data: str | Path) -> Path:
    """`tweets.csv` -> `tweets.coded.csv`, beside the input."""
    p = Path(data)
    return p.with_name(f"{p.stem}.coded{p.suffix}")


def check_output(data: str | Path, out: str | Path) -> None:
    """Refuse an output path that would overwrite the input."""
    if Path(out).resolve() == Path(data).resolve():
        raise UsageError(f"{out}: the output would overwrite the input; choose another -o")
