"""`textcoder sample`: draw the validation sample to code by hand, at random or stratified
by the model's label, each row with its inclusion probability."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sample", help="draw a validation sample (random or stratified) with sample_prob"
    )
    p.add_argument("coded", help="the table to sample from (coded or not)")
    p.add_argument("-n", type=int, required=True, help="how many rows to draw")
    p.add_argument("--seed", type=int, default=0, help="the random seed (default 0)")
    p.add_argument("--strata", metavar="COLUMN", help="stratify by this column (e.g. the label V)")
    p.add_argument(
        "--allocation",
        choices=["proportional", "equal"],
        default="proportional",
        help="rows per stratum: proportional to its size, or equal (oversamples rare ones)",
    )
    p.add_argument("-o", "--output", required=True, help="the sample's table")
    p.add_argument(
        "--mark", metavar="PATH", help="also write the whole table with `sampled` and sample_prob"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..infer.design import draw_table
    from ..tables import check_output, read_table, write_table

    for out in (args.output, args.mark):
        if out:
            check_output(args.coded, out)
    df = read_table(args.coded)
    sample, marked, drawn = draw_table(
        df, args.n, seed=args.seed, strata=args.strata, allocation=args.allocation
    )
    write_table(sample, args.output)
    if args.mark:
        write_table(marked, args.mark)
    print(f"drew {len(sample)} of {len(df)} rows (seed {args.seed}) into {args.output}")
    if args.strata:
        for name, (k, total) in drawn.sizes.items():
            print(
                f"  {args.strata} = {name or '(empty)'}: {k} of {total} (sample_prob {k / total:.4f})"
            )
    return 0
