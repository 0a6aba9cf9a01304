"""The estimators against their reference implementations: PPI++ against ppi_py, the
logistic sandwich against statsmodels, DSL's linear regression against its sandwich."""

from __future__ import annotations

import numpy as np
import pytest

from textcoder.infer import estimators as est
from textcoder.infer.formula import logit_sandwich

ppi_py = pytest.importorskip("ppi_py")


def fixed_data(seed: int = 7, n_rows: int = 3000, n: int = 250):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    y = (rng.random(n_rows) < 0.3).astype(float)
    f = np.clip(0.55 * y + 0.25 + rng.normal(0, 0.2, n_rows), 0, 1)
    r = np.zeros(n_rows, dtype=bool)
    r[rng.choice(n_rows, n, replace=False)] = True
    return f, y, r


@pytest.mark.parametrize("level", [0.90, 0.95, 0.99])
def test_ppi_interval_equals_ppi_py(level: float) -> None:
    f, y, r = fixed_data()
    lo, hi = est.ppi(f, y, r).interval(level)
    # ppi_py's default alpha is 0.1 (a 90% interval): pass the same level explicitly
    ref_lo, ref_hi = ppi_py.ppi_mean_ci(y[r], f[r], f[~r], alpha=1 - level)
    assert abs(float(lo) - float(ref_lo[0])) < 1e-6
    assert abs(float(hi) - float(ref_hi[0])) < 1e-6
    point = ppi_py.ppi_mean_pointestimate(y[r], f[r], f[~r])
    assert abs(float(est.ppi(f, y, r).estimate) - float(np.ravel(point)[0])) < 1e-6


def test_ppi_with_hard_labels_equals_ppi_py() -> None:
    f, y, r = fixed_data(seed=3)
    hard = (f > 0.5).astype(float)
    lo, hi = est.ppi(hard, y, r).interval(0.95)
    ref_lo, ref_hi = ppi_py.ppi_mean_ci(y[r], hard[r], hard[~r], alpha=0.05)
    assert abs(float(lo) - float(ref_lo[0])) < 1e-6
    assert abs(float(hi) - float(ref_hi[0])) < 1e-6


def test_lambda_zero_is_the_classical_interval() -> None:
    f, y, r = fixed_data()
    lo, hi = est.ppi(f, y, r, lam=np.asarray(0.0)).interval(0.95)
    ref_lo, ref_hi = ppi_py.classical_mean_ci(y[r], alpha=0.05)
    assert abs(float(lo) - float(ref_lo)) < 1e-9
    assert abs(float(hi) - float(ref_hi)) < 1e-9
    h_lo, h_hi = est.human_only(y, r, np.full(len(r), r.mean())).interval(0.95)
    assert abs(float(h_lo) - float(ref_lo)) < 1e-9 and abs(float(h_hi) - float(ref_hi)) < 1e-9


def test_dsl_with_equal_probabilities_is_ppi_at_lambda_one_over_all_rows() -> None:
    f, y, r = fixed_data()
    pi = np.full(len(r), r.mean())
    d = est.dsl(f, y, r, pi)
    expected = f.mean() + (y[r] - f[r]).sum() / (len(r) * r.mean())
    assert abs(float(d.estimate) - expected) < 1e-12
    assert float(d.se) == pytest.approx(est.dsl_pseudo(f, y, r, pi).std() / np.sqrt(len(r)))


def test_logit_sandwich_equals_statsmodels_glm_hc0() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(800), rng.normal(size=800), rng.integers(0, 2, 800)])
    y = (rng.random(800) < 1 / (1 + np.exp(-(x @ [-0.5, 0.8, 0.4])))).astype(float)
    beta, cov = logit_sandwich(y, x)
    fit = sm.GLM(y, x, family=sm.families.Binomial()).fit(cov_type="HC0")
    assert np.allclose(beta, fit.params, atol=1e-8)
    assert np.allclose(cov, fit.cov_params(), atol=1e-8)


def test_weighted_ppi_at_lambda_one_is_dsl_and_tuned_is_no_wider() -> None:
    f, y, r = fixed_data()
    pi = np.where(f > 0.5, 0.2, 0.05)
    one = est.ppi_ipw(f, y, r, pi, lam=np.asarray(1.0))
    assert float(one.estimate) == pytest.approx(float(est.dsl(f, y, r, pi).estimate), abs=1e-12)
    tuned = est.ppi_ipw(f, y, r, pi)
    assert float(tuned.se) <= float(one.se) + 1e-12
    assert float(tuned.se) <= float(est.ppi_ipw(f, y, r, pi, lam=np.asarray(0.0)).se) + 1e-12
