"""`textcoder prompt`: print the messages sent for one text, as JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .options import add_codebook_option

if TYPE_CHECKING:
    from ..backends.base import Request
    from ..codebook import Codebook


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "prompt", help="show the exact chat messages sent for a text"
    )
    add_codebook_option(p)
    p.add_argument("--text", "-t", required=True, help="the text to show the prompt for")
    p.add_argument("--variable", help="the variable (default: every variable)")
    p.add_argument(
        "--id", help="the text's row id (examples_from: a labelled row with it is never chosen)"
    )
    p.add_argument("--model", "-m", help="examples_from: the run's model (its engine embeds)")
    p.add_argument("--base-url", help="examples_from: the run's server (then TF-IDF)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the plan's requests: one variable's messages, or every request of the row."""
    from ..codebook import Codebook
    from ..plan import preview_planner

    book = Codebook.from_yaml(args.codebook)
    planner = preview_planner(book)
    if book.examples_from is not None:
        planner.choose_examples = _selector(book, args).choose
    units = planner.plan(args.text, args.id)
    if args.variable:
        planner.joint = False
        one = planner.for_text(args.text, args.id)
        units = [one.variable_unit(args.text, book.variable(args.variable))]
    shown = {", ".join(v.name for v in unit.variables): _requests(unit.requests) for unit in units}
    out: Any = next(iter(shown.values())) if len(shown) == 1 else shown
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _requests(requests: Sequence[Request]) -> Any:
    """One request: its messages (as before); several (multi-label, joint): each with what
    it asks beyond the messages."""
    from ..backends.base import ChatRequest

    only = requests[0] if len(requests) == 1 else None
    if isinstance(only, ChatRequest) and not only.params.extra:
        return only.messages
    return [
        {"messages": r.messages, **(r.params.extra if isinstance(r, ChatRequest) else {})}
        for r in requests
    ]


def _selector(book: Codebook, args: argparse.Namespace) -> Any:
    """The examples' selector a run would use (examples_from:): the local engine's GGUF
    embeds for `similar`, a server run uses TF-IDF."""
    from ..backends import choose_backend
    from ..examples_select import make_selector
    from ..models import resolve_model

    local = choose_backend(args.model, args.base_url) == "local"
    return make_selector(book, resolve_model(args.model).path if local else None)
