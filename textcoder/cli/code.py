"""`textcoder code`: code a table with a codebook and write the coded table and its manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .._exceptions import DataError
from ..codebook import Codebook
from ..coder import Coder
from ..scoring import METHODS
from ..tables import check_output, default_output, read_table, write_table
from .options import add_codebook_option, add_model_options


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("code", help="code every text in a table")
    p.add_argument("data", help="the table to code: CSV, TSV, JSONL, Parquet or Excel")
    add_codebook_option(p)
    p.add_argument("-o", "--output", help="the coded table (default: DATA's stem + .coded)")
    p.add_argument("--text-column", default="text", help="the column holding the texts")
    p.add_argument("--id-column", help="a column that identifies rows (default: the row number)")
    add_model_options(p)
    p.add_argument("--scoring", choices=METHODS, help="how probabilities are read (see README)")
    p.add_argument("--concurrency", type=int, help="requests in flight (default: 1 local, 16 HTTP)")
    p.add_argument("--max-tokens", type=int, default=10, help="answer length limit (default 10)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    book = Codebook.from_yaml(args.codebook)
    df = read_table(args.data)
    for col, flag in ((args.text_column, "--text-column"), (args.id_column, "--id-column")):
        if col is not None and col not in df.columns:
            cols = ", ".join(map(str, df.columns))
            raise DataError(
                f"{args.data}: no column {col!r} (columns: {cols}); choose one with {flag}"
            )
    out = Path(args.output) if args.output else default_output(args.data)
    check_output(args.data, out)
    if args.id_column is not None and df[args.id_column].duplicated().any():
        dup = df[args.id_column][df[args.id_column].duplicated()].iloc[0]
        raise DataError(f"{args.data}: column {args.id_column!r} repeats the id {dup!r}")
    coder = Coder(
        book,
        model=args.model,
        base_url=args.base_url,
        scoring=args.scoring,
        api_key=args.api_key,
        backend=args.backend,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
    )
    texts = df[args.text_column]
    ids = df[args.id_column] if args.id_column else None
    for i, t in enumerate(texts):
        if t is None or (isinstance(t, float) and t != t) or not str(t).strip():
            row = f"id {ids.iloc[i]!r}" if ids is not None else f"row {i + 1}"
            if not args.quiet:
                print(
                    f"textcoder: {args.data}: {row}: empty text, coded 'invalid'", file=sys.stderr
                )
    try:
        coded = coder.code_frame(df, args.text_column, progress=not args.quiet)
    finally:
        coder.close()
    write_table(coded, out)
    manifest = coder.manifest(
        input={
            "path": str(args.data),
            "text_column": args.text_column,
            "id_column": args.id_column,
        },
        output=str(out),
    )
    manifest_path = out.with_name(out.name + ".manifest.json")
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    stats = coder.last_stats
    failed = stats.failed if stats else 0
    if not args.quiet:
        secs = stats.seconds if stats else 0.0
        print(
            f"textcoder: coded {len(df)} rows in {secs:.1f}s -> {out} (+ {manifest_path.name})"
            + (f"; {failed} rows failed (see the *_error columns)" if failed else ""),
            file=sys.stderr,
        )
    return 1 if failed else 0
