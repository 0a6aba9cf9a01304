"""PPI++ regressions against ppi_py's `ppi_ols_ci` and `ppi_logistic_ci` (within 1e-6), and
through `infer --method ppi --formula`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textcoder.infer import Source, infer
from textcoder.infer.ppi_regression import ppi_regression

from .test_infer import coded, with_gold

ppi_py = pytest.importorskip("ppi_py")
pytestmark = pytest.mark.filterwarnings("ignore:.penalty. was deprecated:FutureWarning")


def data(seed: int, rows: int = 2000, n: int = 300):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = np.column_stack([np.ones(rows), rng.normal(size=rows), rng.integers(0, 2, rows)])
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ [-0.8, 0.7, 0.5])))).astype(float)
    f = np.clip(0.15 + 0.6 * y + rng.normal(0, 0.2, rows), 0, 1)
    r = np.zeros(rows, dtype=bool)
    r[rng.choice(rows, n, replace=False)] = True
    return x, y, f, r


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_equals_ppi_py(family: str, seed: int) -> None:
    x, y, f, r = data(seed)
    theta, cov, _ = ppi_regression(family, x, y, f, r)
    z = 1.959963984540054
    lo, hi = theta - z * np.sqrt(np.diag(cov)), theta + z * np.sqrt(np.diag(cov))
    ref = ppi_py.ppi_ols_ci if family == "gaussian" else ppi_py.ppi_logistic_ci
    ref_lo, ref_hi = ref(x[r], y[r], f[r], x[~r], f[~r], alpha=0.05)
    assert np.max(np.abs(lo - ref_lo)) < 1e-6
    assert np.max(np.abs(hi - ref_hi)) < 1e-6


def test_infer_adds_ppi_rows_to_the_regression(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    with_gold(coded()).to_csv(path, index=False)
    res = infer(
        path,
        Source(gold="gold"),
        variable="sentiment",
        formula="negative ~ year + party",
        family="binomial",
    )
    assert set(res["regression"]) == {"model", "ppi", "dsl"}
    assert res["scale"] == "log-odds"
    lo, hi = (res["regression"]["ppi"]["year"][k] for k in ("ci_low", "ci_high"))
    assert lo < res["regression"]["ppi"]["year"]["estimate"] < hi


def test_cli_regression_names_its_scale_and_missing_columns(tmp_path: Path) -> None:
    from .conftest import textcoder

    path = tmp_path / "c.csv"
    with_gold(coded()).to_csv(path, index=False)
    base = ["infer", str(path), "--gold", "gold", "--variable", "sentiment"]
    run = textcoder(*base, "--formula", "negative ~ year", "--family", "binomial")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())  # titles wrap over narrow tables
    assert "scale: log-odds" in text
    assert "ppi" in text.split("log-odds")[1]
    run = textcoder(*base, "--formula", "negative ~ year", "--method", "dsl")
    assert "scale: linear probability" in " ".join(run.stdout.split())
    bad = textcoder(*base, "--formula", "negative ~ year + partei")
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith("no column 'partei' in the table")
    assert len(bad.stderr.strip().splitlines()) == 1
