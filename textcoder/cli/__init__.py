"""The `textcoder` command: a thin shell over the library, one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._exceptions import TextcoderError
from .._version import __version__
from . import annotate, code, estimate, evaluate, infer, models, prompt, sample, serve

COMMANDS = [code, prompt, evaluate, estimate, models, serve, sample, annotate, infer]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textcoder", description="Code texts with chat models, using a codebook."
    )
    parser.add_argument("--version", action="version", version=f"textcoder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TextcoderError as exc:
        print(f"textcoder: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("textcoder: interrupted", file=sys.stderr)
        return 130
