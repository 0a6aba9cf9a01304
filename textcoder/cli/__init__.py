"""The `textcoder` command: a thin shell over the library, one module per subcommand.

A command's module is imported only when that command runs (or shows its own --help), so
`textcoder --help` imports none of them, and each module imports the heavy libraries it
needs inside its `run` function. A module has `register(sub)`, which calls
`sub.add_parser(NAME, ...)`, adds its options and sets `func=run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from .._exceptions import TextcoderError
from .._version import __version__

#: every command and its one-line help; its module is textcoder/cli/NAME.py.
#: Adding a command is one line here.
COMMANDS: dict[str, str] = {
    "code": "code every text in a table",
    "prompt": "show the exact chat messages sent for a text",
    "evaluate": "agreement with human codes and calibration, with bootstrap intervals",
    "estimate": "count prompt tokens and price a run before sending anything",
    "models": "list local models; pull GGUF models from the Hugging Face Hub",
    "serve": "serve a local model over OpenAI's API (chat, responses, completions)",
    "sample": "draw a validation sample (random or stratified) with inclusion probabilities",
    "annotate": "human coding in the browser: a blind sample for several coders, and export",
    "infer": "prevalence and regressions corrected with human codes (model, human, PPI, DSL)",
    "robustness": "re-code a sample under prompt variants and report how codes move",
    "batches": "list the Batch API batches of a store, or cancel those in flight",
    "doctor": "check the install: versions, CPU features, and one text coded",
}


class _OneParser:
    """What a command's `register` sees as `sub`: its own parser, already made, handed back."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if kwargs.get("description"):
            self.parser.description = kwargs["description"]
        return self.parser


def load_command(name: str, parser: argparse.ArgumentParser) -> None:
    """Import the command's module and let it add its options to `parser` (once)."""
    if parser.get_default("func") is not None:
        return
    module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    module.register(_OneParser(parser))


class _LazyCommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands whose options are added only when that subcommand is chosen."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        chosen = self._name_parser_map.get(values[0])
        if chosen is not None:
            load_command(values[0], chosen)
        super().__call__(parser, namespace, values, option_string)


def build_parser(load_all: bool = False) -> argparse.ArgumentParser:
    """The parser; each command's options are added when it is chosen (or all, `load_all`)."""
    parser = argparse.ArgumentParser(
        prog="textcoder", description="Code texts with chat models, using a codebook."
    )
    parser.add_argument("--version", action="version", version=f"textcoder {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, action=_LazyCommands
    )
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load_all:
            load_command(name, p)
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
