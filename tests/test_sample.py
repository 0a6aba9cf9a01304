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


def uncertain_table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet([0.4, 0.4, 0.4], size=n)
    df = pd.DataFrame({"id": [f"t{i}" for i in range(n)], "text": "x"})
    for j, lab in enumerate(["negative", "neutral", "positive"]):
        df[f"sentiment_p_{lab}"] = p[:, j]
    return df


def test_uncertainty_design_draws_n_with_exact_known_probabilities() -> None:
    from textcoder.infer.design import row_uncertainty, uncertainty

    df = uncertain_table(400)
    u = row_uncertainty(df, None, "least-confidence")
    first = uncertainty(u, 60, seed=1)
    assert first.rows.size == len(set(first.rows.tolist())) == 60
    assert np.isclose(first.prob.sum(), 60) and first.prob.max() <= 1.0
    assert first.prob.min() >= 0.2 * 60 / 400 - 1e-12  # the uniform floor
    assert np.corrcoef(u, first.prob)[0, 1] > 0.99  # grows with the uncertainty
    hits = np.zeros(400)
    for seed in range(2000):
        hits[uncertainty(u, 60, seed=seed).rows] += 1
    # each row drawn about as often as its probability says (binomial noise, 2000 draws)
    z = (hits / 2000 - first.prob) / np.sqrt(first.prob * (1 - first.prob) / 2000)
    assert np.abs(z).max() < 5 and abs(z.mean()) < 0.2


def test_uncertainty_caps_at_one_and_entropy_works() -> None:
    from textcoder.infer.design import capped, row_uncertainty

    p = capped(np.array([10.0, 1.0, 1.0, 1.0, 1.0]), 3)
    assert p[0] == 1.0 and np.isclose(p.sum(), 3) and np.allclose(p[1:], 0.5)
    u = row_uncertainty(uncertain_table(50), "sentiment", "entropy")
    assert (u >= 0).all() and (u <= 1 + 1e-12).all()


def test_cli_uncertainty_design(tmp_path: Path) -> None:
    src = tmp_path / "coded.csv"
    uncertain_table(500).to_csv(src, index=False)
    out, mark = tmp_path / "s.csv", tmp_path / "m.csv"
    run = textcoder(
        "sample",
        str(src),
        "-n",
        "50",
        "--design",
        "uncertainty",
        "-o",
        str(out),
        "--mark",
        str(mark),
    )
    assert run.returncode == 0, run.stderr
    assert "by uncertainty (least-confidence): sample_prob from" in run.stdout
    marked = pd.read_csv(mark)
    assert marked["sampled"].sum() == 50 and marked["sample_prob"].nunique() > 100
    assert (marked["sample_stratum"] == "all").all()
    clash = textcoder(
        "sample",
        str(src),
        "-n",
        "50",
        "--design",
        "uncertainty",
        "--strata",
        "id",
        "-o",
        str(out),
    )
    assert clash.returncode == 1 and "drop --strata" in clash.stderr
