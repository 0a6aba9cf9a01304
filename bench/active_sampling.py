"""Active validation sampling: interval width and coverage of DSL and PPI++ when the human
sample is drawn uniformly or by the model's uncertainty, at the same number of human codes.

    python bench/active_sampling.py                            # simulated corpora
    python bench/active_sampling.py --vader smollm2.csv        # and the VADER tweets coded

Simulated: `--corpora` corpora of `--texts` texts with a calibrated model (each text's
probability p ~ Beta(0.5, 0.9), its true code ~ Bernoulli(p)), so the model's errors sit on
the texts it is unsure of. For each size n the same corpus gets a uniform draw and an
uncertainty draw (`textcoder sample --design uncertainty`: least-confidence, uniform share
0.2). VADER: the 300 tweets coded by a model (`textcoder code examples/vader_tweets.csv`),
their gold codes standing in for the human codes, 200 draws per size, every category.
Prints Markdown: mean 95% half-width and coverage of the true share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from textcoder.infer import estimators as est
from textcoder.infer.crossfit import logit, out_of_fold
from textcoder.infer.design import row_uncertainty, simple_random, uncertainty
from textcoder.tables import read_table

Z = 1.959963984540054
ROOT = Path(__file__).resolve().parent.parent


def estimates(
    f: np.ndarray, y: np.ndarray, r: np.ndarray, pi: np.ndarray, uniform: bool, seed: int
) -> dict[str, est.Estimate]:
    """DSL (cross-fitted, as infer's default) and PPI++ (classic on a uniform draw, its
    weighted form on an unequal one) for one category."""
    g = out_of_fold(logit(f)[:, None], y[:, None], r, f[:, None], seed=seed)[:, 0]
    ppi = est.ppi(f, y, r) if uniform else est.ppi_ipw(f, y, r, pi)
    return {"dsl": est.dsl(g, y, r, pi), "ppi": ppi}


def tally(out: dict, key: tuple, found: dict[str, est.Estimate], truth: float) -> None:  # type: ignore[type-arg]
    for m, e in found.items():
        half = Z * float(e.se)
        cell = out.setdefault((*key, m), [[], []])
        cell[0].append(half)
        cell[1].append(abs(float(e.estimate) - truth) <= half)


def simulated(corpora: int, texts: int, sizes: list[int], seed: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    out: dict = {}  # type: ignore[type-arg]
    for c in range(corpora):
        p = rng.beta(0.5, 0.9, texts)
        y = (rng.random(texts) < p).astype(float)
        for n in sizes:
            uni = simple_random(texts, n, seed=c)
            act = uncertainty(np.minimum(p, 1 - p), n, seed=c)
            for name, d in (("uniform", uni), ("uncertainty", act)):
                found = estimates(p, y, d.mask, d.prob, name == "uniform", c)
                tally(out, ("simulated", n, name), found, float(y.mean()))
    return out


def vader(path: Path, sizes: list[int], draws: int) -> dict:  # type: ignore[type-arg]
    df = read_table(path)
    gold = read_table(ROOT / "examples" / "vader_tweets.csv").set_index("id")["gold"]
    truth = df["id"].map(gold).to_numpy()
    labels = sorted(set(truth))
    u = row_uncertainty(df, "sentiment", "least-confidence")
    out: dict = {}  # type: ignore[type-arg]
    for n in sizes:
        for s in range(draws):
            uni, act = simple_random(len(df), n, seed=s), uncertainty(u, n, seed=s)
            for name, d in (("uniform", uni), ("uncertainty", act)):
                for lab in labels:
                    f = df[f"sentiment_p_{lab}"].astype(float).to_numpy()
                    y = (truth == lab).astype(float)
                    found = estimates(f, y, d.mask, d.prob, name == "uniform", s)
                    tally(out, (f"VADER, {lab}", n, name), found, float(y.mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpora", type=int, default=200)
    ap.add_argument("--texts", type=int, default=5000)
    ap.add_argument("--sizes", default="100,200,400")
    ap.add_argument("--vader", type=Path, help="the VADER tweets coded by a model")
    ap.add_argument("--vader-sizes", default="50,100")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = simulated(args.corpora, args.texts, sizes, args.seed)
    if args.vader:
        sizes_v = [int(x) for x in args.vader_sizes.split(",")]
        rows |= vader(args.vader, sizes_v, args.draws)
    print("| data | n | design | dsl half-width | dsl coverage | ppi half-width | ppi coverage |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({k[:3] for k in rows}, key=lambda k: (k[0], k[1], k[2] != "uniform"))
    for k in keys:
        cells = []
        for m in ("dsl", "ppi"):
            half, hit = rows[(*k, m)]
            cells += [f"{np.mean(half):.4f}", f"{np.mean(hit):.1%}"]
        print(f"| {k[0]} | {k[1]} | {k[2]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
