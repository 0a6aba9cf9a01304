"""Rebuild examples/vader_tweets.csv from the vaderSentiment 3.3.2 source distribution.

The sdist ships Hutto & Gilbert's ICWSM 2014 data (MIT licence) in
additional_resources/hutto_ICWSM_2014.tar.gz: `tweets_GroundTruth.txt` (id, mean rating on
-4..4, text) and `tweets_anonDataRatings.txt` (id, mean, sd, every rater's score). This keeps
a seeded random sample of tweets whose two files agree, with the gold category from the mean
(> 0.5 positive, < -0.5 negative, else neutral) and every rating.

    python scripts/build_vader_sample.py                  # downloads the sdist with pip
    python scripts/build_vader_sample.py --sdist vaderSentiment-3.3.2.tar.gz

Cite: Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for
Sentiment Analysis of Social Media Text. ICWSM-14.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"


def category(score: float) -> str:
    """The three-category code of a rating or a mean rating on VADER's -4..4 scale."""
    return "positive" if score > 0.5 else "negative" if score < -0.5 else "neutral"


def fetch_sdist(dest: Path) -> Path:
    """Download the sdist (no wheel: the data is only in the source distribution)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "vaderSentiment==3.3.2",
            "-d",
            str(dest),
        ],
        check=True,
    )
    return next(dest.glob("vaderSentiment-3.3.2.tar.gz"))


def read_members(sdist: Path) -> dict[str, str]:
    """The two tweet files' text, read from the tarball inside the sdist."""
    with tarfile.open(sdist) as outer:
        member = next(m for m in outer.getmembers() if m.name.endswith(INNER))
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for m in inner.getmembers():
            name = Path(m.name).name
            if name in ("tweets_GroundTruth.txt", "tweets_anonDataRatings.txt"):
                out[name] = inner.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
    return out


def build(sdist: Path, n: int, seed: int, keep_all: bool = False) -> pd.DataFrame:
    """The seeded sample of `n` tweets (every usable tweet with `keep_all`)."""
    files = read_members(sdist)
    truth = {}
    for line in files["tweets_GroundTruth.txt"].splitlines():
        if line.strip():
            tid, mean, text = line.split("\t", 2)
            truth[tid] = (float(mean), text.strip())
    rows = []
    for line in files["tweets_anonDataRatings.txt"].splitlines():
        if not line.strip():
            continue
        tid, mean, _sd, raw = line.split("\t")
        ratings = [int(r) for r in ast.literal_eval(raw)]
        gmean, text = truth[tid]
        if abs(float(mean) - gmean) > 1e-3 or abs(float(np.mean(ratings)) - gmean) > 1e-3:
            continue  # the two files disagree on this tweet's mean: leave it out
        rows.append(
            {
                "id": int(tid),
                "text": text,
                "mean": round(gmean, 4),
                "gold": category(gmean),
                "n_raters": len(ratings),
                "ratings": " ".join(map(str, ratings)),
            }
        )
    df = pd.DataFrame(rows)
    if keep_all:
        return df
    return df.sample(n=n, random_state=seed).sort_values("id").reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--sdist", type=Path, help="vaderSentiment-3.3.2.tar.gz (default: pip download)"
    )
    ap.add_argument("-n", type=int, default=300, help="tweets to keep (default 300)")
    ap.add_argument("--seed", type=int, default=2014)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "examples" / "vader_tweets.csv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        df = build(sdist, args.n, args.seed)
    df.to_csv(args.output, index=False)
    counts = df["gold"].value_counts().to_dict()
    print(f"wrote {len(df)} tweets to {args.output}: {counts}")


if __name__ == "__main__":
    main()
