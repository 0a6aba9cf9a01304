"""The CLI reference page in Markdown, written from the parser itself so it cannot drift."""

from __future__ import annotations

import argparse

from . import COMMANDS, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by name, in the order of `COMMANDS`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: dict[str, argparse.ArgumentParser] = action.choices
            return {name: found[name] for name in COMMANDS}
    raise ValueError("the parser has no subcommands")


def _flags(action: argparse.Action) -> str:
    """`--model`, `-m` or the positional's name, with the value's metavar."""
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    takes = action.nargs != 0
    value = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
    )
    names = ", ".join(f"`{o}`" for o in action.option_strings)
    return f"{names} `{value}`" if takes else names


def _cell(text: str | None) -> str:
    """Help text as one table cell: `%(default)s` filled is argparse's job; pipes escaped."""
    return " ".join((text or "").split()).replace("|", "\\|")


def command_markdown(name: str, parser: argparse.ArgumentParser) -> str:
    """One command: its help line, its usage and a table of its arguments."""
    usage = parser.format_usage().removeprefix("usage: ").strip()
    rows = [
        f"| {_flags(a)} | {_cell(a.help % {'default': a.default} if a.help else '')} |"
        for a in parser._actions
        if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
    ]
    return "\n".join(
        [
            f"## textcoder {name}",
            "",
            _cell(parser.description) + ".",
            "",
            "```text",
            usage,
            "```",
            "",
            "| argument | what it does |",
            "| --- | --- |",
            *rows,
            "",
        ]
    )


def cli_markdown() -> str:
    """Every command of `textcoder`, as `textcoder NAME --help` would show it, in Markdown."""
    parser = build_parser(load_all=True)
    return "\n".join(command_markdown(n, p) for n, p in _subparsers(parser).items())
