"""`textcoder evaluate`: agreement and calibration of coded files against a gold column."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..codebook import Codebook

RESAMPLES = 1000  # as textcoder.evaluate.bootstrap.DEFAULT_RESAMPLES (not imported: scikit-learn)
SEED = 0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "evaluate", help="agreement with human codes and calibration, with bootstrap intervals"
    )
    p.add_argument(
        "coded", nargs="+", help="coded tables (by `textcoder code`, or any with a label column)"
    )
    p.add_argument("--gold", required=True, help="the column holding the human codes")
    p.add_argument(
        "--gold-file",
        metavar="PATH",
        help="take the --gold column from this table (e.g. `textcoder annotate --export`), "
        "joined on the id column",
    )
    p.add_argument(
        "--id-column",
        help="the id column to join --gold-file on (default: the manifest's, else `id`)",
    )
    p.add_argument("--variable", help="the variable to evaluate (default: the only one)")
    p.add_argument(
        "--codebook", "-c", help="the codebook, where the manifest's is missing or has changed"
    )
    p.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
    p.add_argument("--report", metavar="PATH", help="write a self-contained HTML report")
    p.add_argument(
        "--resamples", type=int, default=RESAMPLES, help="bootstrap resamples (default 1000)"
    )
    p.add_argument("--seed", type=int, default=SEED, help="bootstrap seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..codebook import Codebook
    from ..evaluate import evaluate_files, write_metrics, write_report

    book = Codebook.from_yaml(args.codebook) if args.codebook else None
    evaluated = evaluate_files(
        args.coded,
        args.gold,
        variable=args.variable,
        codebook=book,
        resamples=args.resamples,
        seed=args.seed,
        gold_file=args.gold_file,
        id_column=args.id_column,
    )
    for note in dict.fromkeys(n for coded, _ in evaluated for n in coded.notes):
        print(note, file=sys.stderr)
    results = [r for _, r in evaluated]
    print_summary(results)
    if args.json:
        write_metrics(results, args.json)
    if args.report:
        write_report(evaluated, args.report)
    return 0


def print_summary(results: list[dict[str, Any]]) -> None:
    """The side-by-side table, plus a line per file on rows left out."""
    from rich.console import Console

    from ..evaluate import rich_table

    console = Console(width=max(100, 40 + 30 * len(results)))
    first = results[0]
    console.print(rich_table(results, title=f"{first['variable']} vs. {first['gold_column']}"))
    for r in results:
        if r["n_failed"] or r["n_missing_gold"]:
            console.print(
                f"{r['name']}: left out {r['n_failed']} failed rows and "
                f"{r['n_missing_gold']} rows without a gold code"
            )


def after_code(out: Path, golds: dict[str, str], book: Codebook, *, quiet: bool) -> None:
    """`textcoder code --gold`: evaluate the table just written; metrics beside it as
    OUT.metrics.json (OUT.VAR.metrics.json for each of several variables)."""
    from ..evaluate import evaluate, load_coded, write_metrics

    for var, col in golds.items():
        coded = load_coded(out, col, variable=var, codebook=book)
        result = evaluate(coded)
        name = f"{out.name}.metrics.json" if len(golds) == 1 else f"{out.name}.{var}.metrics.json"
        write_metrics([result], out.with_name(name))
        if not quiet:
            print_summary([result])
