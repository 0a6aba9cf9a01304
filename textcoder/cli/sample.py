"""`textcoder sample`: draw the validation sample to code by hand, at random or stratified
by the model's label, each row with its inclusion probability."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._exceptions import UsageError


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
    p.add_argument(
        "--design",
        choices=["random", "uncertainty"],
        default="random",
        help="random (stratified with --strata), or uncertainty: rows the model is unsure "
        "of are likelier to be drawn, each with its known sample_prob (active inference)",
    )
    p.add_argument(
        "--variable",
        help="with --design uncertainty: the variable whose "
        "probabilities measure it (default: the only one)",
    )
    p.add_argument(
        "--uncertainty",
        choices=["least-confidence", "entropy"],
        default="least-confidence",
        help="1 minus the largest probability (default), or the entropy",
    )
    p.add_argument(
        "--uniform-share",
        type=float,
        default=None,
        help="with --design uncertainty: the share of the sample spread evenly, the floor "
        "that gives every row a probability above 0 (default: textcoder.infer.design.UNIFORM_SHARE, 0.2)",
    )
    p.add_argument("-o", "--output", required=True, help="the sample's table")
    p.add_argument(
        "--mark", metavar="PATH", help="also write the whole table with `sampled` and sample_prob"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..infer.design import draw_table
    from ..tables import check_output, read_table, write_table

    for out in (args.output, args.mark):
        if out:
            check_output(args.coded, out)
    if args.mark and Path(args.mark).resolve() == Path(args.output).resolve():
        raise UsageError(f"{args.mark}: -o and --mark name the same file; give two paths")
    df = read_table(args.coded)
    sample, marked, drawn = draw_table(
        df,
        args.n,
        seed=args.seed,
        strata=args.strata,
        allocation=args.allocation,
        design=args.design,
        variable=args.variable,
        measure=args.uncertainty,
        **({} if args.uniform_share is None else {"uniform_share": args.uniform_share}),
    )
    write_table(sample, args.output)
    if args.mark:
        write_table(marked, args.mark)
    print(f"drew {len(sample)} of {len(df)} rows (seed {args.seed}) into {args.output}")
    if args.design == "uncertainty":
        probs = drawn.prob
        if np.ptp(probs) < 1e-12:
            print("  the model is equally (un)certain of every row: this draw is uniform")
        print(
            f"  by uncertainty ({args.uncertainty}): sample_prob from {probs.min():.4f} to "
            f"{probs.max():.4f} (uniform {args.n / len(df):.4f})"
        )
    if args.strata:
        for name, (k, total) in drawn.sizes.items():
            print(
                f"  {args.strata} = {name or '(empty)'}: {k} of {total} (sample_prob {k / total:.4f})"
            )
    return 0
