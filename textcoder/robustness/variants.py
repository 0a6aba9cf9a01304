"""Prompt variants of a codebook: the arbitrary choices a robustness check varies.

Each variant is the codebook as written with one thing changed: the categories' order, their
descriptions, the worked examples, or the instructions (paraphrases the codebook lists under
`paraphrases:`; none are invented). Variants are plain `Codebook` objects, coded with the
public `Coder` like any other codebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..codebook import Codebook

KINDS = ("order", "descriptions", "examples", "instructions")
BASE = "base"


@dataclass(frozen=True)
class Variant:
    """One prompt variant: a short name (a column suffix), its kind and its codebook."""

    name: str
    kind: str
    codebook: Codebook
    about: str


def _orders(n_categories: int, orders: int, seed: int) -> list[list[int]]:
    """Up to `orders` distinct seeded orders of the categories, none the written one."""
    import math

    possible = math.factorial(n_categories) - 1
    rng = np.random.default_rng(seed)
    seen: list[list[int]] = []
    while len(seen) < min(orders, possible):
        order = [int(i) for i in rng.permutation(n_categories)]
        if order != list(range(n_categories)) and order not in seen:
            seen.append(order)
    return seen


def order_variants(book: Codebook, orders: int, seed: int) -> list[Variant]:
    """`orders` codebooks with every variable's categories in other seeded orders (each
    variable's orders distinct; fewer when a variable has fewer other orders)."""
    per_var = [_orders(len(v.categories), orders, seed) for v in book.variables]
    out = []
    for i in range(min(len(o) for o in per_var)):
        variables = tuple(
            v.model_copy(update={"categories": tuple(v.categories[j] for j in o[i])})
            for v, o in zip(book.variables, per_var, strict=True)
        )
        shown = "; ".join(", ".join(v.labels) for v in variables)
        out.append(
            Variant(
                f"order-{i + 1}", "order", book.model_copy(update={"variables": variables}), shown
            )
        )
    return out


def description_variants(book: Codebook) -> tuple[list[Variant], str | None]:
    """The codebook without its category descriptions (when it has any)."""
    if not any(c.description for v in book.variables for c in v.categories):
        return [], "descriptions: the codebook has no category descriptions to leave out"
    variables = tuple(
        v.model_copy(
            update={
                "categories": tuple(
                    c.model_copy(update={"description": None}) for c in v.categories
                )
            }
        )
        for v in book.variables
    )
    bare = book.model_copy(update={"variables": variables})
    return [Variant("no-descriptions", "descriptions", bare, "no category descriptions")], None


def example_variants(book: Codebook, draws: int, seed: int) -> tuple[list[Variant], str | None]:
    """No examples at all, and `draws` other draws of them: random draws from the labelled
    file of `examples_from:`, else the fixed examples in other orders."""
    if not book.examples and book.examples_from is None:
        return [], "examples: the codebook has no examples to vary"
    none = book.model_copy(update={"examples": (), "examples_from": None})
    out = [Variant("no-examples", "examples", none, "no examples")]
    spec = book.examples_from
    for i in range(1, draws + 1):
        if spec is not None:
            drawn = spec.model_copy(update={"select": "random", "seed": seed * 1000 + i})
            about = f"{spec.k} random examples per text (seed {drawn.seed})"
            out.append(
                Variant(
                    f"examples-{i}",
                    "examples",
                    book.model_copy(update={"examples_from": drawn}),
                    about,
                )
            )
        elif len(book.examples) > 1:
            order = np.random.default_rng([seed, 100 + i]).permutation(len(book.examples))
            shuffled = tuple(book.examples[j] for j in order)
            out.append(
                Variant(
                    f"examples-{i}",
                    "examples",
                    book.model_copy(update={"examples": shuffled}),
                    f"the examples in the order {[int(j) + 1 for j in order]}",
                )
            )
    return out, None


def instruction_variants(book: Codebook) -> tuple[list[Variant], str | None]:
    """One codebook per paraphrase of the instructions listed under `paraphrases:`."""
    if not book.paraphrases:
        return [], "instructions: the codebook lists no `paraphrases:` (textcoder invents none)"
    return [
        Variant(
            f"instructions-{i}",
            "instructions",
            book.model_copy(update={"instructions": text}),
            text.strip().splitlines()[0][:80],
        )
        for i, text in enumerate(book.paraphrases, start=1)
    ], None


def make_variants(
    book: Codebook, kinds: list[str], orders: int = 3, draws: int = 2, seed: int = 0
) -> tuple[list[Variant], list[str]]:
    """The variants of `kinds` (in KINDS order) and a note for each kind that has none."""
    variants: list[Variant] = []
    notes: list[str] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        if kind == "order":
            variants += order_variants(book, orders, seed)
            continue
        made, note = (
            description_variants(book)
            if kind == "descriptions"
            else example_variants(book, draws, seed)
            if kind == "examples"
            else instruction_variants(book)
        )
        variants += made
        if note:
            notes.append(note)
    return variants, notes
