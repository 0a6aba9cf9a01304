"""The robustness check: a seeded sample of a table coded again under prompt variants.

Each variant is a modified `Codebook` coded with the public `Coder` (one engine shared by all),
every request through the store: a re-run sends nothing, and where the table is the output of
`textcoder code` (its manifest names its store) the base codes come from that run's answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._exceptions import DataError, UsageError
from ..codebook import Codebook
from ..coder import Coder
from .measure import _failed, column, measure
from .variants import BASE, KINDS, Variant, make_variants

DEFAULT_N = 200


@dataclass
class Check:
    """What a check found: the variant columns per text and the figures per variable."""

    table: pd.DataFrame
    figures: dict[str, Any]
    variants: list[Variant] = field(default_factory=list)


def sample_table(
    df: pd.DataFrame, n: int, seed: int, text_column: str, id_column: str | None
) -> pd.DataFrame:
    """`n` rows drawn without replacement (seeded), in table order, with `id` (the id column,
    else the row number from 1, as `textcoder code` names rows in its store) and `text`."""
    for col in (text_column, id_column):
        if col is not None and col not in df.columns:
            raise DataError(
                f"no column {col!r} in the table (columns: {', '.join(map(str, df.columns))})"
            )
    ids = df[id_column].astype(str) if id_column else pd.Series(range(1, len(df) + 1)).astype(str)
    out = df.drop(columns=[c for c in ("id", "text") if c in df.columns])
    out.insert(0, "text", df[text_column].to_numpy())
    out.insert(0, "id", ids.to_numpy())
    if n < len(out):
        out = out.sample(n=n, random_state=seed).sort_index()
    return out.reset_index(drop=True)


def _labels(
    coder: Coder, sample: pd.DataFrame, progress: bool, handle_signals: bool
) -> dict[str, list[str | None]]:
    """Each variable's labels for the sample under the coder's codebook (None: failed)."""
    frame = pd.DataFrame({"text": sample["text"].fillna("").astype(str), "row": sample["id"]})
    coded = coder.code_frame(
        frame, text_column="text", id_column="row", progress=progress, handle_signals=handle_signals
    )
    return {
        var.name: [None if _failed(lab) else str(lab) for lab in coded[var.name].tolist()]
        for var in coder.codebook.variables
    }


def run_check(
    book: Codebook,
    sample: pd.DataFrame,
    make_coder: Callable[[Codebook, Coder | None], Coder],
    kinds: Sequence[str] = KINDS,
    *,
    orders: int = 3,
    draws: int = 2,
    seed: int = 0,
    gold: str | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
    handle_signals: bool = False,
) -> Check:
    """Code `sample` under the codebook as written and each variant; measure how codes move.

    `make_coder(codebook, base)` makes the coder for a codebook (`base` None for the codebook
    as written; variants get the base coder, whose engine they share). `handle_signals`:
    Ctrl-C keeps every answer in the store and raises `RunInterrupted`."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UsageError(f"unknown variants {unknown}; choose from {', '.join(KINDS)}")
    if gold is not None and gold not in sample.columns:
        raise DataError(f"no gold column {gold!r} in the table")
    variants, notes = make_variants(book, list(kinds), orders=orders, draws=draws, seed=seed)
    table = sample[["id", "text", *([gold] if gold else [])]].copy()
    base = make_coder(book, None)
    engine = base.manifest().get("model")
    cost: dict[str, dict[str, int]] = {}
    runs = [(BASE, book), *((v.name, v.codebook) for v in variants)]
    for k, (name, codebook) in enumerate(runs, start=1):
        coder = base if name == BASE else make_coder(codebook, base)
        try:
            if say is not None:
                say(f"variant {k} of {len(runs)}: {name}")
            for var_name, labels in _labels(coder, sample, progress, handle_signals).items():
                table[column(var_name, name)] = labels
        finally:
            coder.close()  # the store (one live run each) and connections; reopened on use
        stats = coder.last_stats
        cost[name] = {
            "requests": stats.requests if stats else 0,
            "reused": stats.reused if stats else 0,
        }
    names = [BASE, *(v.name for v in variants)]
    about = {
        BASE: ("base", "the codebook as written"),
        **{v.name: (v.kind, v.about) for v in variants},
    }
    figures = {
        "n_texts": len(table),
        "seed": seed,
        "kinds": list(kinds),
        "notes": notes,
        "requests_sent": sum(c["requests"] for c in cost.values()),
        "answers_reused": sum(c["reused"] for c in cost.values()),
        "cost": cost,
        "engine": engine,
        "scoring": base.scoring,
        "variables": [
            measure(table, var, names, about, gold) for var in book.variables if not var.multi
        ],
    }
    return Check(table, figures, variants)


def store_of(manifest: dict[str, Any]) -> Path | None:
    """The store a `textcoder code` run kept its answers in, when it still exists."""
    store = manifest.get("store")
    return Path(store) if isinstance(store, str) and Path(store).is_file() else None
