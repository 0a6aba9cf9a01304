"""Bad inputs to `infer` and `sample` that used to pass silently: each one a one-line error
naming the row, column, term or file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .conftest import textcoder
from .test_infer import coded, with_gold
from .test_sample import table


def infer_cli(df: pd.DataFrame, tmp_path: Path, *extra: str) -> tuple[int, str]:
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    run = textcoder("infer", str(path), "--gold", "gold", "--variable", "sentiment", *extra)
    return run.returncode, run.stderr.strip()


def test_sample_prob_outside_unit_interval_on_an_uncoded_row(tmp_path: Path) -> None:
    df = with_gold(coded())
    i = int(np.flatnonzero(df["gold"] == "")[3])
    df.loc[i, "sample_prob"] = 5.0
    rc, err = infer_cli(df, tmp_path)
    assert rc == 1 and f"row {i + 1}: sample_prob 5 is not in (0, 1]" in err
    assert len(err.splitlines()) == 1


def test_model_probability_outside_unit_interval(tmp_path: Path) -> None:
    df = with_gold(coded())
    df.loc[7, "sentiment_p_neutral"] = 14.89
    rc, err = infer_cli(df, tmp_path)
    assert rc == 1 and "row 8: sentiment_p_neutral 14.89 is not a probability" in err


def test_one_human_code_is_refused(tmp_path: Path) -> None:
    df = with_gold(coded())
    keep = df.index[df["gold"] != ""][0]
    df.loc[df.index != keep, "gold"] = ""
    rc, err = infer_cli(df, tmp_path)
    assert rc == 1 and "1 rows have a human code" in err and "at least 2" in err


def test_constant_regressor_is_named(tmp_path: Path) -> None:
    df = with_gold(coded()).assign(country="X")
    rc, err = infer_cli(df, tmp_path, "--formula", "negative ~ year + country")
    assert rc == 1 and "term" in err and "constant" in err
    df = with_gold(coded()).assign(size=1.0)
    rc, err = infer_cli(df, tmp_path, "--formula", "negative ~ size")
    assert rc == 1 and "'size' is constant" in err
    assert "Warning" not in err


def test_strata_with_probability_zero_are_refused(tmp_path: Path) -> None:
    df = table()
    df["score"] = np.random.default_rng(0).random(len(df)).round(3)
    src = tmp_path / "coded.csv"
    df.to_csv(src, index=False)
    run = textcoder(
        "sample", str(src), "-n", "50", "--strata", "score", "-o", str(tmp_path / "s.csv")
    )
    assert run.returncode == 1
    assert "would get no row" in run.stderr and "holds numbers" in run.stderr
    small = pd.concat([df, df.head(2).assign(sentiment="rare")])
    small.to_csv(src, index=False)
    run = textcoder(
        "sample", str(src), "-n", "20", "--strata", "sentiment", "-o", str(tmp_path / "s.csv")
    )
    assert run.returncode == 1 and "'rare', 2 rows" in run.stderr
    run = textcoder(
        "sample", str(src), "-n", "2", "--strata", "sentiment", "-o", str(tmp_path / "s.csv")
    )
    assert run.returncode == 1 and "would get no row" in run.stderr
    ok = textcoder(
        "sample",
        str(src),
        "-n",
        "20",
        "--strata",
        "sentiment",
        "--allocation",
        "equal",
        "-o",
        str(tmp_path / "s.csv"),
    )
    assert ok.returncode == 0, ok.stderr


def test_output_and_mark_the_same_file(tmp_path: Path) -> None:
    src = tmp_path / "coded.csv"
    table().to_csv(src, index=False)
    out = tmp_path / "s.csv"
    run = textcoder("sample", str(src), "-n", "20", "-o", str(out), "--mark", str(out))
    assert run.returncode == 1 and "-o and --mark name the same file" in run.stderr
    assert not out.exists()
