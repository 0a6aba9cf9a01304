"""`textcoder infer`: prevalence (and regressions) from model codes corrected by a
human-coded sample, by the model alone, the humans alone, PPI++ and DSL, side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

METHODS = ("model", "human", "ppi", "dsl")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "infer", help="prevalence and regressions: model, human, PPI++ and DSL, with CIs"
    )
    p.add_argument("coded", help="the whole coded table (with or without its manifest)")
    p.add_argument(
        "--gold",
        help="the column of human codes (empty where not coded); with --gold-file, "
        "its column (default V_human, V or gold)",
    )
    p.add_argument("--gold-file", help="human codes in a table joined on the id column")
    p.add_argument("--id-column", help="the id column to join on (default: the manifest's, or id)")
    p.add_argument("--variable", help="the variable (default: the only one)")
    p.add_argument("--codebook", "-c", help="the codebook, where there is no manifest")
    p.add_argument("--by", metavar="COLUMN", help="prevalence per value of this column too")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument(
        "--method",
        action="append",
        choices=METHODS,
        help="the methods to show (repeat; default all four)",
    )
    p.add_argument(
        "--target-width",
        type=float,
        metavar="W",
        help="how many more human codes for an interval half-width of W",
    )
    p.add_argument(
        "--covariates",
        metavar="COL,COL",
        help="columns that, with the model's probabilities, predict the human code for dsl "
        "(cross-fitted, 5 folds)",
    )
    p.add_argument(
        "--dsl-prediction",
        choices=["crossfit", "raw"],
        default="crossfit",
        help="dsl's prediction of the human code: cross-fitted from the model's probabilities "
        "(and --covariates), as R's dsl (default), or the model's raw probability",
    )
    p.add_argument("--formula", help="a regression, e.g. 'negative ~ party + year'")
    p.add_argument(
        "--family", choices=["gaussian", "binomial"], default="gaussian", help="linear or logistic"
    )
    p.add_argument(
        "--missing-codes",
        choices=["adjust", "refuse"],
        default="adjust",
        help="drawn rows without a human code (ties left by annotate): adjust, assuming them "
        "missing at random within their stratum (default), or refuse",
    )
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._exceptions import UsageError
    from ..codebook import Codebook
    from ..infer import Source, infer

    if not args.gold and not args.gold_file:
        raise UsageError("give the human codes with --gold COLUMN or --gold-file FILE")
    result = infer(
        args.coded,
        Source(gold=args.gold, gold_file=args.gold_file, id_column=args.id_column),
        variable=args.variable,
        codebook=Codebook.from_yaml(args.codebook) if args.codebook else None,
        by=args.by,
        level=args.level,
        methods=args.method or METHODS,
        target_width=args.target_width,
        formula=args.formula,
        family=args.family,
        covariates=[c.strip() for c in args.covariates.split(",")] if args.covariates else (),
        missing=args.missing_codes,
        dsl_prediction=args.dsl_prediction,
    )
    for w in result["warnings"]:
        print(f"textcoder: warning: {w}", file=sys.stderr)
    print_result(result, Console(width=120))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


#: the mark of an interval clipped to [0, 1], and what it means
CLIPPED = "†"
CLIPPED_NOTE = f"{CLIPPED} clipped to [0, 1]: the normal interval reached past a share's range"


def fmt(c: dict[str, Any]) -> str:
    """`0.231 [0.198, 0.264]` (with † where clipped to [0, 1]), or n/a."""
    if c.get("estimate") is None:
        return "n/a"
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if lo is None or hi is None:
        return f"{c['estimate']:.3f}"
    mark = CLIPPED if c.get("clipped") else ""
    return f"{c['estimate']:.3f} [{lo:.3f}, {hi:.3f}]{mark}"


def header(method: str, result: dict[str, Any]) -> str:
    """The method's column name, `ppi (IPW)` where PPI++ took its weighted form."""
    return "ppi (IPW)" if method == "ppi" and result.get("ppi_form") == "ipw" else method


def prevalence_table(
    cells: dict[str, Any], methods: list[str], title: str, result: dict[str, Any]
) -> Table:
    t = Table(title=title)
    t.add_column("category")
    for m in methods:
        t.add_column(header(m, result), justify="right")
    for lab, row in cells.items():
        t.add_row(escape(lab), *(fmt(row[m]) for m in methods))
    if any(c.get("clipped") for row in cells.values() for c in row.values()):
        t.caption = CLIPPED_NOTE
    return t


def print_result(result: dict[str, Any], console: Console) -> None:
    """The prevalence tables, effective n, more codes needed and regressions."""
    methods = result["methods"]
    pct = f"{result['level']:.0%}"
    title = (
        f"{result['variable']}: prevalence, {pct} intervals "
        f"({result['n_coded']} human codes of {result['n_total']} rows)"
    )
    console.print(prevalence_table(result["prevalence"], methods, title, result))
    for g, block in result.get("by", {}).items():
        sub = f"{result['by_column']} = {g} ({block['n_coded']} coded of {block['n_total']})"
        console.print(prevalence_table(block["prevalence"], methods, sub, result))
    if "ppi" in methods and result.get("ppi_form") == "ipw":
        console.print(
            "ppi (IPW): sample_prob differs between coded rows, so PPI++ takes its "
            "inverse-probability-weighted form"
        )
    if "dsl" in methods and result.get("dsl_prediction"):
        console.print(f"dsl prediction: {result['dsl_prediction']}")
    design = result.get("design") or {}
    if design.get("missing_codes"):
        console.print(
            f"drawn rows without a human code: {design['missing_codes']} of {design['drawn']}, "
            f"handled as {design['handling']}"
        )
    for lab, eff in result["effective_n"].items():
        parts = ", ".join(f"{m} {v:.0f}" for m, v in eff.items() if v is not None)
        console.print(f"effective n, {lab}: {parts}")
    for lab, more in result.get("more_needed", {}).items():
        parts = ", ".join(f"{m} {'unreachable' if v is None else v}" for m, v in more.items())
        console.print(f"more codes for half-width {result['target_width']}, {lab}: {parts}")
    if "regression" in result:
        scale = result.get("scale", result["family"])
        t = Table(
            title=escape(
                f"{result['formula']} ({result['family']}; scale: {scale}), {pct} intervals"
            )
        )
        t.add_column("term")
        for m in result["regression"]:
            t.add_column(m, justify="right")
        terms = next(iter(result["regression"].values()))
        for term in terms:
            t.add_row(escape(term), *(fmt(r[term]) for r in result["regression"].values()))
        console.print(t)
