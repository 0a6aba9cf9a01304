"""Which calibration should the local engine use by default? none, content-free, batch and
prior compared on balanced and unbalanced human-coded samples.

    python bench/calibration_default.py                       # codes the two sets (exact)
    python bench/calibration_default.py --coded vader=none.csv --coded topics=topics.csv

Sets: the 300 VADER tweets; seeded 70/20/10 subsamples of them (each category in turn the
majority, the others 20 and 10%); the 100 topic headlines (5 topics, balanced) and a seeded
50/20/15/10/5 subsample. A `--coded NAME=FILE` is a table written by `textcoder code` with
`exact` scoring (its probabilities are reused; nothing is coded again but the content-free
inputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcoder import Codebook, Coder
from textcoder.calibration import CONTENT_FREE_INPUTS, gold_codes, make_calibrator, prob_columns
from textcoder.evaluate.metrics import Sample, headline

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"
SETS = {
    "vader": (EX / "vader_tweets.csv", EX / "vader_sentiment.yaml", (0.7, 0.2, 0.1)),
    "topics": (EX / "topic_headlines.csv", EX / "topics.yaml", (0.5, 0.2, 0.15, 0.1, 0.05)),
}
METHODS = ("none", "content-free", "batch", "prior")


def figures(probs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Headline metrics of probabilities (labels = argmax; `other` is 0 after exact)."""
    full = np.column_stack([probs, np.zeros(len(probs))])
    return headline(
        Sample(gold=gold, pred=probs.argmax(axis=1), probs=full, n_categories=probs.shape[1])
    )


def subsample(y: np.ndarray, order: list[int], shares: tuple[float, ...], seed: int) -> np.ndarray:
    """Row indices with category order[i] making shares[i] of the rows (as many as fit)."""
    counts = np.bincount(y, minlength=len(order))
    n = int(min(counts[c] / s for c, s in zip(order, shares, strict=True)))
    rng = np.random.default_rng(seed)
    idx: list[int] = []
    for c, s in zip(order, shares, strict=True):
        idx += rng.choice(np.flatnonzero(y == c), round(s * n), replace=False).tolist()
    return np.array(sorted(idx))


def coded_probs(name: str, coded: Path | None, model: str | None) -> tuple[Any, ...]:
    """(raw probabilities, gold codes, content-free distributions, labels) of one set."""
    data, book_path, _ = SETS[name]
    book = Codebook.from_yaml(book_path)
    var = book.variables[0]
    coder = Coder(book, model=model, scoring="exact", calibrate="none")
    df = pd.read_csv(coded) if coded else coder.code_frame(pd.read_csv(data), progress=False)
    found = coder.code_texts(list(CONTENT_FREE_INPUTS), progress=False)
    coder.close()
    cf = np.array([[r[var.name].probs[lab] for lab in var.labels] for r in found])
    raw = df[prob_columns(var)].to_numpy(dtype=float)
    return raw / raw.sum(axis=1, keepdims=True), gold_codes(df, "gold", var), cf, var.labels


def report(title: str, raw: np.ndarray, y: np.ndarray, cf: np.ndarray) -> None:
    """One markdown table: every method's figures on these rows."""
    prev = np.bincount(y, minlength=raw.shape[1]) / len(y)
    print(f"\n### {title}: {len(y)} texts, gold shares {np.round(prev, 2).tolist()}")
    print("| method | accuracy | macro-F1 | ECE | Brier |\n| --- | --- | --- | --- | --- |")
    for method in METHODS:
        probs = make_calibrator(method, cf).fit_transform(raw)
        f = figures(probs, y)
        print(
            f"| {method} | {f['accuracy']:.3f} | {f['macro_f1']:.3f} | {f['ece']:.3f} "
            f"| {f['brier']:.3f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a GGUF path or local alias (default: the embedded model)")
    ap.add_argument("--coded", action="append", default=[], metavar="SET=FILE")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    given = dict(c.split("=", 1) for c in args.coded)
    for name, (_, _, shares) in SETS.items():
        raw, y, cf, labels = coded_probs(
            name, Path(given[name]) if name in given else None, args.model
        )
        report(f"{name}, all", raw, y, cf)
        k = len(labels)
        orders = (
            [[m, *[c for c in range(k) if c != m]] for m in range(k)]
            if k == 3
            else [list(range(k))]
        )
        for order in orders:
            idx = subsample(y, order, shares, args.seed)
            shown = "/".join(
                f"{labels[c]} {round(100 * s)}" for c, s in zip(order, shares, strict=True)
            )
            report(f"{name}, {shown}", raw[idx], y[idx], cf)


if __name__ == "__main__":
    main()
