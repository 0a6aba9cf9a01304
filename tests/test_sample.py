"""`textcoder sample`: seeded draws, inclusion probabilities, strata and their allocation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textcoder._exceptions import UsageError
from textcoder.infer.design import allocate, draw_table, simple_random, stratified

from .conftest import textcoder


def table(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = rng.choice(["negative", "neutral", "positive"], size=n, p=[0.05, 0.25, 0.7])
    return pd.DataFrame({"id": [f"t{i}" for i in range(n)], "text": "x", "sentiment": labels})


def test_simple_random_is_seeded_and_uniform() -> None:
    a, b, c = simple_random(1000, 300, 1), simple_random(1000, 300, 1), simple_random(1000, 300, 2)
    assert np.array_equal(a.rows, b.rows) and not np.array_equal(a.rows, c.rows)
    assert len(set(a.rows.tolist())) == 300
    assert np.allclose(a.prob, 0.3) and a.mask.sum() == 300


def test_proportional_allocation_sums_and_probabilities() -> None:
    labels = table()["sentiment"].tolist()
    d = stratified(labels, 100, seed=0)
    assert d.rows.size == 100
    counts = {k: labels.count(k) for k in set(labels)}
    for name, (k, total) in d.sizes.items():
        assert total == counts[name] and abs(k - 100 * total / 1000) < 1
        assert np.allclose(d.prob[np.array(labels) == name], k / total)
    assert np.isclose(d.prob.sum(), 100)  # expected sample size


def test_equal_allocation_oversamples_the_rare_stratum_and_passes_on_the_rest() -> None:
    assert allocate(np.array([40, 500, 490]), 90, "equal").tolist() == [30, 30, 30]
    assert allocate(np.array([10, 500, 490]), 150, "equal").tolist() == [10, 70, 70]
    assert allocate(np.array([3, 4, 5]), 12, "equal").tolist() == [3, 4, 5]
    with pytest.raises(UsageError):
        simple_random(10, 11)


def test_draw_table_marks_every_row() -> None:
    df = table()
    sample, marked, _ = draw_table(df, 60, seed=5, strata="sentiment", allocation="equal")
    assert len(sample) == 60 and marked["sampled"].sum() == 60
    assert sample["sentiment"].value_counts().tolist() == [20, 20, 20]
    assert set(sample["id"]) == set(marked.loc[marked["sampled"], "id"])
    rare = marked["sentiment"] == "negative"
    assert np.allclose(marked.loc[rare, "sample_prob"], 20 / rare.sum())


def test_cli_sample_and_mark(tmp_path: Path) -> None:
    src = tmp_path / "coded.csv"
    table().to_csv(src, index=False)
    out, mark = tmp_path / "sample.csv", tmp_path / "marked.csv"
    args = [str(src), "-n", "50", "--seed", "3", "--strata", "sentiment", "-o", str(out)]
    run = textcoder("sample", *args, "--mark", str(mark))
    assert run.returncode == 0, run.stderr
    assert "sentiment = negative" in run.stdout
    first = pd.read_csv(out)
    assert len(first) == 50 and "sample_prob" in first.columns
    assert pd.read_csv(mark)["sampled"].sum() == 50
    again = textcoder("sample", *args[:-1], str(tmp_path / "again.csv"))
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(tmp_path / "again.csv")["id"].tolist() == first["id"].tolist()
    refused = textcoder("sample", str(src), "-n", "5", "-o", str(src))
    assert refused.returncode == 1 and "overwrite the input" in refused.stderr
