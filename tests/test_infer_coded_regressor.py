"""A coded variable as a regressor in DSL: coverage of the true coefficient over simulated
corpora (where the model's own probabilities are biased), and `infer --formula 'y ~ V'`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textcoder.infer import Source, infer
from textcoder.infer.coded_regressor import dsl_solve

from .test_infer import LABELS, coded, with_gold


def corpus(rng: np.random.Generator, texts: int = 3000):  # type: ignore[no-untyped-def]
    """A binary coded variable (share 0.4), a model whose probability over-calls it, and
    an outcome: 1 + 0.5 * code + 0.3 * z + noise (linear) or its logistic version."""
    code = (rng.random(texts) < 0.4).astype(float)
    p = 1 / (1 + np.exp(-(-0.3 + 2.0 * code + rng.normal(0, 1.0, texts))))
    z = rng.normal(size=texts)
    return code, p, z


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_dsl_covers_the_coefficient_of_a_coded_regressor(family: str) -> None:
    rng = np.random.default_rng(8)
    corpora, n, texts = 200, 300, 3000
    hits, naive_hits = 0, 0
    truth = np.array([-0.5, 1.0, 0.3]) if family == "binomial" else np.array([1.0, 0.5, 0.3])
    for _ in range(corpora):
        code, p, z = corpus(rng, texts)
        x = np.column_stack([np.ones(texts), code, z])
        eta = x @ truth
        if family == "binomial":
            y = (rng.random(texts) < 1 / (1 + np.exp(-eta))).astype(float)
        else:
            y = eta + rng.normal(0, 1.0, texts)
        r = np.zeros(texts, dtype=bool)
        r[rng.choice(texts, n, replace=False)] = True
        xhat = np.column_stack([np.ones(texts), p, z])
        w = np.where(r, texts / n, 0.0)
        beta, cov = dsl_solve(family, y, np.where(r[:, None], x, xhat), xhat, w)
        se = np.sqrt(cov[1, 1])
        hits += int(abs(beta[1] - truth[1]) <= 1.96 * se)
        naive, ncov = dsl_solve(family, y, xhat, xhat, np.zeros(texts))
        naive_hits += int(abs(naive[1] - truth[1]) <= 1.96 * np.sqrt(ncov[1, 1]))
    assert hits / corpora >= 0.93
    assert naive_hits / corpora < 0.5  # the model's probability in place of the code: biased


def test_infer_with_the_coded_variable_on_the_right(tmp_path: Path) -> None:
    df = with_gold(coded())
    rng = np.random.default_rng(1)
    df["shares"] = 2.0 + 1.5 * (df["truth"] == "negative") + rng.normal(0, 1, len(df))
    df["viral"] = (df["shares"] > 3).astype(int)
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    res = infer(
        path, Source(gold="gold"), variable="sentiment", formula="shares ~ sentiment + year"
    )
    assert set(res["regression"]) == {"model", "dsl"}
    terms = res["regression"]["dsl"]
    assert set(terms) == {"Intercept", "sentiment[neutral]", "sentiment[positive]", "year"}
    # negative is the reference: the others' shares are 1.5 lower (coverage over many
    # corpora is the simulation's job; one table is checked loosely)
    for lab in LABELS[1:]:
        c, m = terms[f"sentiment[{lab}]"], res["regression"]["model"][f"sentiment[{lab}]"]
        assert abs(c["estimate"] + 1.5) < 3 * c["se"]
        assert c["estimate"] != pytest.approx(m["estimate"], abs=1e-3)
    assert any("PPI++ needs every regressor observed" in w for w in res["warnings"])
    logit = infer(
        path,
        Source(gold="gold"),
        variable="sentiment",
        formula="viral ~ sentiment",
        family="binomial",
    )
    assert logit["scale"] == "log-odds"
    assert logit["regression"]["dsl"]["sentiment[positive]"]["estimate"] < 0
