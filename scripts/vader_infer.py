"""Prevalence on the VADER tweets from model codes plus a small human-coded sample.

    python scripts/vader_infer.py smollm2.csv vader.csv [--n 80] [--seed 0]

Draws a seeded simple random sample of `--n` tweets (as `textcoder sample CODED -n 80 --seed 0`
does), takes their gold codes (the raters' mean) as the human codes and treats the other
tweets as uncoded, then runs `textcoder infer` for each coded file and prints, per category,
the true share among all 300 tweets beside the four estimates and their 95% intervals
(Markdown, as in the docs).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from textcoder.infer import Source, infer
from textcoder.infer.design import draw_table
from textcoder.tables import read_table

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "vader_tweets.csv"
METHODS = ("model", "human", "ppi", "dsl")


def cell(c: dict[str, float | None], truth: float) -> str:
    if c["estimate"] is None or c["ci_low"] is None or c["ci_high"] is None:
        return "n/a"
    mark = "" if c["ci_low"] <= truth <= c["ci_high"] else " ✗"
    return f"{c['estimate']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]{mark}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("coded", nargs="+", help="coded tables of examples/vader_tweets.csv")
    ap.add_argument("--n", type=int, default=80, help="human-coded tweets (default 80)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tweets = read_table(DATA)
    truth = tweets["gold"].value_counts(normalize=True).to_dict()
    sample, _, _ = draw_table(tweets, args.n, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        codes = Path(tmp) / "codes.csv"
        sample[["id", "sample_prob"]].assign(sentiment_human=sample["gold"]).to_csv(
            codes, index=False
        )
        results = {
            p: infer(p, Source(gold_file=str(codes)), variable="sentiment") for p in args.coded
        }
    print("| category | true share (300) | coder | " + " | ".join(METHODS) + " |")
    print("|---|---|---|" + "---|" * len(METHODS))
    for lab in next(iter(results.values()))["prevalence"]:
        for path, res in results.items():
            cells = [cell(res["prevalence"][lab][m], truth.get(lab, 0.0)) for m in METHODS]
            print(
                f"| {lab} | {truth.get(lab, 0.0):.3f} | {Path(path).stem} | "
                + " | ".join(cells)
                + " |"
            )
    for path, res in results.items():
        eff = ", ".join(
            f"{lab} {v['ppi']:.0f}" for lab, v in res["effective_n"].items() if v.get("ppi")
        )
        print(f"\n{Path(path).stem}: effective n (ppi): {eff}; warnings: {res['warnings']}")


if __name__ == "__main__":
    main()
