"""A seeded simulation: 400 corpora of 5,000 texts, a model biased toward the category, 300
human codes drawn at random and again stratified by the model's label. The corrected
intervals cover the corpus's true share; the model's alone does not."""

from __future__ import annotations

import numpy as np

from textcoder.infer import estimators as est

CORPORA, TEXTS, CODED = 400, 5000, 300


def corpora(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """True indicators (prevalence 0.3) and a model's probability that over-calls it."""
    y = (rng.random((CORPORA, TEXTS)) < 0.3).astype(float)
    logit = -1.0 + 2.5 * y + rng.normal(0.0, 1.0, y.shape)
    return y, 1.0 / (1.0 + np.exp(-logit))


def random_sample(rng: np.random.Generator) -> np.ndarray:
    keys = rng.random((CORPORA, TEXTS))
    cut = np.partition(keys, CODED - 1, axis=1)[:, CODED - 1 : CODED]
    return keys <= cut


def stratified_sample(rng: np.random.Generator, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal allocation over the model's label (150 each), pi = 150 / stratum size."""
    stratum = f > 0.5
    keys = rng.random(f.shape)
    r = np.zeros(f.shape, dtype=bool)
    pi = np.zeros(f.shape)
    per = CODED // 2
    for h in (False, True):
        inside = stratum == h
        k = np.where(inside, keys, np.inf)
        cut = np.partition(k, per - 1, axis=1)[:, per - 1 : per]
        r |= inside & (k <= cut)
        pi = np.where(inside, per / inside.sum(axis=1, keepdims=True), pi)
    return r, pi


def covers(e: est.Estimate, truth: np.ndarray) -> float:
    lo, hi = e.interval(0.95)
    return float(np.mean((lo <= truth) & (truth <= hi)))


def test_coverage_of_the_corrected_intervals() -> None:
    rng = np.random.default_rng(2024)
    y, f = corpora(rng)
    truth = y.mean(axis=1)
    r = random_sample(rng)
    assert (r.sum(axis=1) == CODED).all()
    pi = np.full(y.shape, CODED / TEXTS)
    ppi, human = est.ppi(f, y, r), est.human_only(y, r, pi)
    assert covers(ppi, truth) >= 0.93
    assert covers(est.dsl(f, y, r, pi), truth) >= 0.93
    assert covers(est.model_only(f), truth) < 0.50
    assert ppi.se.mean() < human.se.mean()

    rs, pis = stratified_sample(rng, f)
    assert (rs.sum(axis=1) == CODED).all()
    assert covers(est.dsl(f, y, rs, pis), truth) >= 0.93
    assert covers(est.human_only(y, rs, pis), truth) >= 0.90
    weighted = est.ppi_ipw(f, y, rs, pis)
    assert covers(weighted, truth) >= 0.93  # PPI++'s weighted form is valid here
    assert weighted.se.mean() < est.human_only(y, rs, pis).se.mean()


def test_cross_fitted_dsl_covers_and_narrows() -> None:
    """200 corpora of 2,000 texts, 200 coded at random, a miscalibrated model: DSL with a
    cross-fitted prediction covers and is narrower than DSL with the raw probability."""
    from textcoder.infer.crossfit import logit, out_of_fold

    rng = np.random.default_rng(7)
    corpora, texts, n = 200, 2000, 200
    hits, widths_cf, widths_raw = 0, [], []
    for _ in range(corpora):
        y = (rng.random(texts) < 0.3).astype(float)
        f = 1.0 / (1.0 + np.exp(-(0.5 + 1.2 * y + rng.normal(0.0, 1.0, texts))))
        r = np.zeros(texts, dtype=bool)
        r[rng.choice(texts, n, replace=False)] = True
        pi = np.full(texts, n / texts)
        g = out_of_fold(logit(f)[:, None], y[:, None], r, f[:, None])[:, 0]
        cf, raw = est.dsl(g, y, r, pi), est.dsl(f, y, r, pi)
        lo, hi = cf.interval(0.95)
        hits += int(lo <= y.mean() <= hi)
        widths_cf.append(float(cf.se))
        widths_raw.append(float(raw.se))
    assert hits / corpora >= 0.93
    assert np.mean(widths_cf) < 0.95 * np.mean(widths_raw)


def test_uncertainty_sampling_covers_and_narrows() -> None:
    """400 corpora of 2,000 texts whose model is calibrated, so its errors sit on the texts
    it is unsure of; 200 human codes drawn by uncertainty (known unequal probabilities):
    DSL, PPI++ (weighted) and the human estimate cover, and DSL is narrower than with a
    uniform draw of the same size."""
    from textcoder.infer.design import simple_random, uncertainty

    rng = np.random.default_rng(3)
    corpora, texts, n = 400, 2000, 200
    hits = {"dsl": 0, "ppi": 0, "human": 0}
    se_active, se_uniform = [], []
    for seed in range(corpora):
        p = rng.beta(0.5, 0.9, texts)
        y = (rng.random(texts) < p).astype(float)
        act = uncertainty(np.minimum(p, 1 - p), n, seed=seed)
        r, pi = act.mask, act.prob
        found = {
            "dsl": est.dsl(p, y, r, pi),
            "ppi": est.ppi_ipw(p, y, r, pi),
            "human": est.human_only(y, r, pi),
        }
        for name, e in found.items():
            lo, hi = e.interval(0.95)
            hits[name] += int(lo <= y.mean() <= hi)
        se_active.append(float(found["dsl"].se))
        uni = simple_random(texts, n, seed=seed)
        se_uniform.append(float(est.dsl(p, y, uni.mask, uni.prob).se))
    for name, k in hits.items():
        assert k / corpora >= 0.93, name
    assert np.mean(se_active) < 0.95 * np.mean(se_uniform)
