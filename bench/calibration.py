"""Calibration methods compared on human-coded samples: accuracy, macro-F1, ECE and Brier.

    python bench/calibration.py                        # embedded model, examples' labelled sets
    python bench/calibration.py --model PATH.gguf      # any GGUF
    python bench/calibration.py --data D.csv --codebook C.yaml --gold gold

Each sample is coded once (scoring `exact` on the local engine); each method then calibrates
those probabilities. `batch`, `prior` and `content-free` use no human codes; `fit` uses them
and is cross-validated (5 folds: every text is scored by a fit that never saw it). Where the
VADER lexicon is installed and the sample is the VADER tweets, its figures are printed too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from textcoder import Codebook, Coder
from textcoder.calibration import (
    CONTENT_FREE_INPUTS,
    METHODS,
    BatchCalibrator,
    cross_fit,
    gold_codes,
    make_calibrator,
    prob_columns,
)
from textcoder.evaluate.metrics import Sample, headline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SETS = [  # (data, codebook, gold column)
    (EXAMPLES / "vader_tweets.csv", EXAMPLES / "vader_sentiment.yaml", "gold"),
    (EXAMPLES / "tweets.csv", EXAMPLES / "sentiment.yaml", "gold"),
]
SHOW = ("accuracy", "macro_f1", "ece", "brier")


def figures(probs: np.ndarray[Any, Any], gold: np.ndarray[Any, Any]) -> dict[str, float]:
    """The headline metrics of probabilities (labels = argmax) against gold codes."""
    k = probs.shape[1]
    full = np.column_stack([probs, np.zeros(len(probs))])  # `other` is 0 after exact scoring
    sample = Sample(gold=gold, pred=probs.argmax(axis=1), probs=full, n_categories=k)
    return headline(sample)


def vader_probs(texts: list[str], labels: list[str]) -> np.ndarray[Any, Any] | None:
    """The VADER lexicon's labels (compound >= 0.05 positive, <= -0.05 negative) as one-hots."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        return None
    sia = SentimentIntensityAnalyzer()
    out = np.zeros((len(texts), len(labels)))
    for i, t in enumerate(texts):
        c = sia.polarity_scores(t)["compound"]
        lab = "positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral"
        out[i, labels.index(lab)] = 1.0
    return out


def run_set(data: Path, book_path: Path, gold_col: str, model: str | None, folds: int) -> None:
    book = Codebook.from_yaml(book_path)
    var = book.variables[0]
    df = pd.read_csv(data)
    coder = Coder(book, model=model, scoring="exact", calibrate="none")
    started = time.perf_counter()
    coded = coder.code_frame(df, progress=False)
    cf_rows = coder.code_texts(list(CONTENT_FREE_INPUTS), progress=False)
    secs = time.perf_counter() - started
    coder.close()
    raw = coded[prob_columns(var)].to_numpy(dtype=float)
    raw = raw / raw.sum(axis=1, keepdims=True)
    y = gold_codes(df, gold_col, var)
    keep = y >= 0
    raw, y = raw[keep], y[keep]
    cf = np.array([[r[var.name].probs[lab] for lab in var.labels] for r in cf_rows])
    rows: dict[str, dict[str, float]] = {}
    params: dict[str, Any] = {}
    for method in METHODS:
        if method == "fit":
            cv = cross_fit(raw, y, "fit", folds=folds)
            probs, params[method] = cv.probs, {"folds": int(cv.folds.max()) + 1}
        else:
            cal = make_calibrator(method, cf).fit(raw)
            probs, params[method] = cal.transform(raw), cal.params
        rows[method] = figures(probs, y)
    rows["batch (one step, Zhou et al.)"] = figures(
        BatchCalibrator(max_iter=1).fit_transform(raw), y
    )
    texts = df.loc[keep, "text"].astype(str).tolist()
    vp = (
        vader_probs(texts, var.labels)
        if set(var.labels) == {"positive", "negative", "neutral"}
        else None
    )
    if vp is not None:
        rows["VADER lexicon (reference)"] = figures(vp, y)

    model_name = coder.backend.describe().get("model", model or "embedded")
    prevalence = np.bincount(y, minlength=len(var.labels)) / len(y)
    print(f"\n## {data.name}: {len(y)} human-coded texts, model {model_name}, scoring exact")
    print(
        f"coded in {secs:.1f}s; gold prevalence "
        + ", ".join(f"{lab} {p:.2f}" for lab, p in zip(var.labels, prevalence, strict=True))
    )
    print(
        "mean raw distribution: "
        + ", ".join(f"{lab} {p:.2f}" for lab, p in zip(var.labels, raw.mean(axis=0), strict=True))
    )
    print(f"\n| method | {' | '.join(SHOW)} |")
    print("|" + " --- |" * (len(SHOW) + 1))
    for name, fig in rows.items():
        print(f"| {name} | " + " | ".join(f"{fig[k]:.3f}" for k in SHOW) + " |")
    for method in ("batch", "content-free", "prior"):
        print(f"{method} parameters: {params[method]}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", help="a GGUF path or local alias (default: the embedded model)")
    ap.add_argument("--data", type=Path, help="a labelled table (with --codebook)")
    ap.add_argument("--codebook", type=Path)
    ap.add_argument("--gold", default="gold", help="the column of human codes (default gold)")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds for fit")
    args = ap.parse_args()
    sets = (
        [(args.data, args.codebook, args.gold)] if args.data else [s for s in SETS if s[0].exists()]
    )
    for data, book, gold in sets:
        run_set(data, book, gold, args.model, args.folds)


if __name__ == "__main__":
    main()
