"""Build examples/vader_pool.csv: labelled VADER tweets for `examples_from:`, none of them in
examples/vader_tweets.csv (the 300 that are evaluated), built the same way.

    python scripts/build_vader_pool.py                  # downloads the sdist with pip
    python scripts/build_vader_pool.py --sdist vaderSentiment-3.3.2.tar.gz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from build_vader_sample import ROOT, build, fetch_sdist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sdist", type=Path, help="vaderSentiment-3.3.2.tar.gz (default: pip download)"
    )
    ap.add_argument("-n", type=int, default=200, help="tweets in the pool (default 200)")
    ap.add_argument("--seed", type=int, default=2015)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "examples" / "vader_pool.csv")
    args = ap.parse_args()
    sample = pd.read_csv(ROOT / "examples" / "vader_tweets.csv")
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        everything = build(sdist, n=0, seed=args.seed, keep_all=True)
    rest = everything[
        ~everything["id"].isin(sample["id"]) & ~everything["text"].isin(sample["text"])
    ]
    pool = rest.sample(n=args.n, random_state=args.seed).sort_values("id").reset_index(drop=True)
    pool[["id", "text", "mean", "gold"]].rename(columns={"gold": "sentiment"}).to_csv(
        args.output, index=False
    )
    print(f"wrote {len(pool)} tweets to {args.output}: {pool['gold'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
