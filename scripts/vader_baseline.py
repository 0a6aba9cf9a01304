"""Baseline coders for the VADER tweets, written as coded files that `textcoder evaluate` reads.

    python scripts/vader_baseline.py vader -o vader.csv     # the VADER lexicon (pip install vaderSentiment)
    python scripts/vader_baseline.py rater -o rater.csv     # one human rater per tweet
    python scripts/vader_baseline.py raters                 # the raters' own agreement

`vader` codes each tweet from vaderSentiment's compound score with its documented thresholds
(>= 0.05 positive, <= -0.05 negative, else neutral). `rater` takes the first listed rating of
each tweet (one person's score, mapped with the gold thresholds: > 0.5 positive, < -0.5
negative). Both put probability 1 on their label. `raters` prints Krippendorff's alpha across
all raters, and a single rater against the mean of the others.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd

from textcoder.codebook import Codebook
from textcoder.output import OUTSIDE, column, variable_columns

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "vader_tweets.csv"
BOOK = ROOT / "examples" / "vader_sentiment.yaml"


def gold_category(score: float) -> str:
    return "positive" if score > 0.5 else "negative" if score < -0.5 else "neutral"


def vader_category(compound: float) -> str:
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


def write_coded(df: pd.DataFrame, labels: list[str], raw: list[str], out: Path, coder: str) -> None:
    """The coded table in `textcoder code`'s column layout, and its manifest."""
    book = Codebook.from_yaml(BOOK)
    var = book.variables[0]
    coded = df.copy()
    cols = variable_columns(var)
    v = var.name
    coded[v] = labels
    for lab, col in zip(var.labels, cols[1 : 1 + len(var.labels)], strict=True):
        coded[col] = [1.0 if x == lab else 0.0 for x in labels]
    coded[column(v, OUTSIDE)] = 0.0
    coded[column(v, "confidence")] = 1.0
    coded[column(v, "entropy")] = 0.0
    coded[column(v, "raw")] = raw
    coded[column(v, "error")] = ""
    coded.to_csv(out, index=False)
    manifest = {
        "codebook": {
            "path": str(BOOK.relative_to(ROOT)),
            "name": book.name,
            "sha256": book.sha256,
            "variables": {x.name: x.labels for x in book.variables},
        },
        "backend": "baseline",
        "model": coder,
        "scoring": "text (probability 1 on the label)",
        "input": {"path": str(DATA.relative_to(ROOT)), "text_column": "text", "id_column": "id"},
        "output": str(out),
        "rows": len(coded),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.with_name(out.name + ".manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out} ({len(coded)} rows)")


def ratings(df: pd.DataFrame) -> list[list[int]]:
    return [[int(x) for x in s.split()] for s in df["ratings"]]


def code_vader(df: pd.DataFrame, out: Path) -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    compound = [sia.polarity_scores(t)["compound"] for t in df["text"]]
    write_coded(
        df,
        [vader_category(c) for c in compound],
        [f"{c:.4f}" for c in compound],
        out,
        "vaderSentiment 3.3.2 (compound >= 0.05 positive, <= -0.05 negative)",
    )


def code_rater(df: pd.DataFrame, out: Path) -> None:
    first = [r[0] for r in ratings(df)]
    write_coded(
        df,
        [gold_category(x) for x in first],
        [str(x) for x in first],
        out,
        "one human rater per tweet (the first listed rating)",
    )


def raters_agreement(df: pd.DataFrame) -> None:
    """Krippendorff's alpha across raters (rater slots as coders; alpha does not depend on which
    person fills a slot), and the first rater against the mean of the others."""
    rs = ratings(df)
    width = max(map(len, rs))
    scores = np.full((width, len(rs)), np.nan)
    cats = np.full((width, len(rs)), np.nan)
    order = {"negative": 0, "neutral": 1, "positive": 2}
    for j, r in enumerate(rs):
        scores[: len(r), j] = r
        cats[: len(r), j] = [order[gold_category(x)] for x in r]
    print(f"tweets: {len(rs)}, ratings per tweet: {min(map(len, rs))} to {width}")
    for name, data, level in (
        ("scores -4..4, interval", scores, "interval"),
        ("three categories, ordinal", cats, "ordinal"),
        ("three categories, nominal", cats, "nominal"),
    ):
        a = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        print(f"Krippendorff's alpha across raters ({name}): {a:.3f}")
    first = [r[0] for r in rs]
    others = [float(np.mean(r[1:])) for r in rs]
    from sklearn.metrics import accuracy_score, f1_score

    y = [gold_category(m) for m in others]
    x = [gold_category(s) for s in first]
    r = float(np.corrcoef(first, others)[0, 1])
    print(
        "first rater vs. mean of the others (leave-one-out): "
        f"accuracy {accuracy_score(y, x):.3f}, macro F1 {f1_score(y, x, average='macro'):.3f}, "
        f"weighted F1 {f1_score(y, x, average='weighted'):.3f}, Pearson r {r:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("coder", choices=["vader", "rater", "raters"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args()
    df = pd.read_csv(args.data)
    if args.coder == "raters":
        raters_agreement(df)
        return
    out = args.output or Path(f"{args.coder}.csv")
    (code_vader if args.coder == "vader" else code_rater)(df, out)


if __name__ == "__main__":
    main()
