"""`textcoder prompt`: print the messages sent for one text, as JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..codebook import Codebook
from ..prompt import build_messages
from .options import add_codebook_option


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "prompt", help="show the exact chat messages sent for a text"
    )
    add_codebook_option(p)
    p.add_argument("--text", "-t", required=True, help="the text to show the prompt for")
    p.add_argument("--variable", help="the variable (default: every variable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    book = Codebook.from_yaml(args.codebook)
    variables = [book.variable(args.variable)] if args.variable else list(book.variables)
    out: Any
    if len(variables) == 1:
        out = build_messages(book, args.text, variables[0])
    else:
        out = {v.name: build_messages(book, args.text, v) for v in variables}
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
