"""`textcoder estimate`: count the tokens a run would send and price them, sending nothing."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..codebook import Codebook
from ..estimate import estimate
from .options import add_codebook_option


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "estimate", help="count prompt tokens and price a run before sending anything"
    )
    p.add_argument("data", help="the table to code: CSV, TSV, JSONL, Parquet or Excel")
    add_codebook_option(p)
    p.add_argument(
        "--model",
        "-m",
        help="an OpenAI model (priced) or a local alias/GGUF (default: the embedded model)",
    )
    p.add_argument("--text-column", default="text", help="the column holding the texts")
    p.add_argument("--max-tokens", type=int, default=10, help="answer length limit (default 10)")
    p.add_argument(
        "--batch", action="store_true", help="price at the Batch API's rate (code --batch)"
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    book = Codebook.from_yaml(args.codebook)
    report = estimate(
        args.data, book, args.model, args.text_column, args.max_tokens, batch=args.batch
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line, file=sys.stdout)
    return 0
