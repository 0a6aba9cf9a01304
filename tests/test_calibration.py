"""Calibration methods on synthetic probabilities with a known bias (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from textcoder import Codebook, Coder, CodeResult, DataError, UsageError, VariableResult
from textcoder.calibration import (
    CONTENT_FREE_INPUTS,
    BatchCalibrator,
    ContentFreeCalibrator,
    FitCalibrator,
    NoCalibration,
    PriorCalibrator,
    calibrate_table,
    cross_fit,
    fold_ids,
    make_calibrator,
    prob_columns,
)
from textcoder.results import result_columns
from textcoder.runner import empty_result, failed_result

from .conftest import EXAMPLES
from .conftest import textcoder as textcoder_cli

BIAS = np.array([0.6, 0.25, 0.15])


def synthetic(
    n: int,
    prevalence: npt.ArrayLike,
    bias: npt.ArrayLike = BIAS,
    signal: float = 1.0,
    sharpness: float = 1.0,
    seed: int = 0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Texts with exact class counts; features x ~ N(signal * e_y, I). The unbiased posterior
    under a uniform prior is softmax(signal * x); the biased model says
    softmax(sharpness * signal * x + log bias). Returns (model probs, classes, true logits)."""
    prev = np.asarray(prevalence, dtype=float)
    k = prev.shape[0]
    counts = np.round(prev * n).astype(int)
    y = np.repeat(np.arange(k), counts)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(y.shape[0], k))
    x[np.arange(y.shape[0]), y] += signal
    evidence = signal * x
    logits = sharpness * evidence + np.log(np.asarray(bias, dtype=float))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True), y, evidence


def test_none_is_identity() -> None:
    p, _, _ = synthetic(50, [1 / 3] * 3)
    assert np.allclose(NoCalibration().fit_transform(p), p, rtol=0, atol=1e-15)
    assert NoCalibration().params == {}


def test_batch_recovers_bias_on_balanced_data() -> None:
    p, y, _ = synthetic(2000, [1 / 3] * 3)
    cal = BatchCalibrator().fit(p)
    assert cal.bias is not None
    assert np.max(np.abs(cal.bias - BIAS)) < 0.02
    q = cal.transform(p)
    assert np.allclose(q.sum(axis=1), 1.0)
    assert np.max(np.abs(q.mean(axis=0) - 1 / 3)) < 0.02
    # the correction helps: more texts get their true class than before
    assert (q.argmax(axis=1) == y).mean() > (p.argmax(axis=1) == y).mean()
    # Zhou et al.'s one-step estimate is the mean distribution, recorded as well
    one = BatchCalibrator(max_iter=1).fit(p)
    assert one.bias is not None and np.allclose(one.bias, p.mean(axis=0))
    assert cal.params["mean_distribution"] == one.params["bias"]


def test_prior_recovers_prevalence_on_imbalanced_data() -> None:
    prevalence = np.array([0.2, 0.3, 0.5])
    p, y, _ = synthetic(2000, prevalence, signal=2.0)
    cal = PriorCalibrator(content_free=BIAS[None, :]).fit(p)
    assert cal.prevalence is not None
    truth = np.bincount(y, minlength=3) / y.shape[0]
    assert np.max(np.abs(cal.prevalence - truth)) < 0.02
    q = cal.transform(p)
    assert np.allclose(q.sum(axis=1), 1.0)
    assert np.max(np.abs(q.mean(axis=0) - truth)) < 0.02
    # batch, assuming balance, spreads these texts evenly instead
    assert np.max(np.abs(BatchCalibrator().fit_transform(p).mean(axis=0) - truth)) > 0.1
    params = cal.params
    assert params["model_prior"] == pytest.approx(list(BIAS), abs=1e-6)
    assert params["em_iterations"] > 1


def test_prior_does_not_collapse_when_probabilities_barely_depend_on_the_text() -> None:
    """A weak signal and a content-free estimate a little off the true bias: plain EM runs
    to a corner (every text gets one label); the shrunk MAP estimate stays inside."""
    p, y, _ = synthetic(1000, [1 / 3] * 3, signal=0.4)
    off = np.array([[0.5, 0.35, 0.15]])  # the true bias is BIAS = 0.6, 0.25, 0.15
    plain = PriorCalibrator(off, shrink=False).fit(p)
    assert plain.prevalence is not None and plain.prevalence.min() < 0.01
    assert len(set(plain.transform(p).argmax(axis=1))) < 3 or plain.prevalence.max() > 0.9
    fixed = PriorCalibrator(off).fit(p)
    assert fixed.prevalence is not None and fixed.prevalence.min() > 0.2
    assert fixed.params["dirichlet_pseudo_counts"] > 0.8 * 1000 / 3
    assert (fixed.transform(p).argmax(axis=1) == y).mean() > (
        plain.transform(p).argmax(axis=1) == y
    ).mean()


def test_content_free_divides_out_the_bias() -> None:
    p, _, evidence = synthetic(200, [1 / 3] * 3)
    rng = np.random.default_rng(1)
    cf = BIAS[None, :] * rng.uniform(0.97, 1.03, size=(3, 3))  # three noisy content-free answers
    cal = ContentFreeCalibrator(cf)
    assert np.max(np.abs(cal.bias - BIAS)) < 0.02
    exact = ContentFreeCalibrator(BIAS).fit_transform(p)
    truth = np.exp(evidence) / np.exp(evidence).sum(axis=1, keepdims=True)
    assert np.allclose(exact, truth)
    assert cal.params["content_free_inputs"] == 3


def test_fit_recovers_temperature_and_bias() -> None:
    prevalence = np.array([0.5, 0.3, 0.2])
    p, y, _ = synthetic(2000, prevalence, sharpness=2.0)
    cal = FitCalibrator().fit(p, y)
    assert cal.temperature == pytest.approx(2.0, abs=0.15)
    want = np.log(prevalence) - np.log(BIAS) / 2.0
    want -= want[0]
    assert cal.bias is not None
    assert np.max(np.abs(cal.bias - want)) < 0.15
    assert cal.params["fitted_rows"] == 2000


def test_fit_never_sees_the_rows_it_is_evaluated_on() -> None:
    p, y, _ = synthetic(300, [1 / 3] * 3, sharpness=2.0)
    first = cross_fit(p, y, folds=5)
    fold0 = first.folds == 0
    assert 0 < fold0.sum() < 300
    # fold 0's probabilities come from a fit on the other folds alone ...
    alone = FitCalibrator().fit(p[~fold0], y[~fold0]).transform(p[fold0])
    assert np.allclose(first.probs[fold0], alone, rtol=0, atol=1e-12)
    # ... so changing fold 0's human codes changes nothing for fold 0, but does for the rest
    flipped = y.copy()
    flipped[fold0] = (flipped[fold0] + 1) % 3
    second = cross_fit(p, flipped, folds=5)
    assert np.array_equal(second.folds, first.folds)
    assert np.array_equal(second.probs[fold0], first.probs[fold0])
    assert not np.allclose(second.probs[~fold0], first.probs[~fold0])
    assert len(first.params) == 5


@pytest.mark.parametrize("method", ["batch", "content-free", "prior", "fit"])
def test_deterministic(method: str) -> None:
    p, y, _ = synthetic(300, [0.5, 0.3, 0.2], sharpness=1.5)
    runs = [make_calibrator(method, content_free=BIAS[None, :]).fit(p, y) for _ in range(2)]
    assert runs[0].params == runs[1].params
    assert np.array_equal(runs[0].transform(p), runs[1].transform(p))
    a, b = (
        cross_fit(p, y, method=method, content_free=BIAS),
        cross_fit(p, y, method=method, content_free=BIAS),
    )
    assert np.array_equal(a.probs, b.probs)
    assert np.array_equal(fold_ids(40, 5, seed=0), fold_ids(40, 5, seed=0))


def test_bad_input_is_refused() -> None:
    with pytest.raises(UsageError, match="human code"):
        FitCalibrator().fit([[0.5, 0.5], [0.2, 0.8]])
    with pytest.raises(ValueError, match="finite"):
        BatchCalibrator().fit([[0.5, float("nan")], [0.2, 0.8]])
    with pytest.raises(UsageError, match="content-free"):
        make_calibrator("content-free")
    with pytest.raises(UsageError, match="unknown calibration"):
        make_calibrator("platt")
    with pytest.raises(UsageError, match="fit"):
        BatchCalibrator().transform([[0.5, 0.5]])


# --- calibrating a coded table (the output columns), as `code --calibrate` does ---


def coded_table(book: Codebook, probs: npt.NDArray[np.float64]) -> pd.DataFrame:
    """A coded table built by the real column writer from synthetic probabilities, plus a
    failed row, an empty text and an answer that named no category."""
    var = book.variables[0]
    results = [
        CodeResult(
            {
                var.name: VariableResult(
                    var.labels[int(p.argmax())], dict(zip(var.labels, map(float, p), strict=True))
                )
            }
        )
        for p in probs
    ]
    results.append(CodeResult({var.name: failed_result(var, "server error")}))
    results.append(CodeResult({var.name: empty_result(var)}))
    odd = dict(zip(var.labels, [0.1, 0.1, 0.2], strict=True))
    results.append(CodeResult({var.name: VariableResult("<invalid>", odd, other=0.6, raw="hmm")}))
    return pd.DataFrame(result_columns(book, results))


def test_table_keeps_raw_and_labels_follow(sentiment_book: Codebook) -> None:
    p, _, _ = synthetic(300, [1 / 3] * 3)
    table = coded_table(sentiment_book, p)
    out, info = calibrate_table(table, sentiment_book, "batch")
    var = sentiment_book.variables[0]
    pcols, rawcols = prob_columns(var), prob_columns(var, "rawp")
    cols = list(out.columns)
    assert cols.index(rawcols[0]) == cols.index("sentiment_outside") + 1
    assert np.allclose(out[rawcols].to_numpy()[:300], table[pcols].to_numpy()[:300])
    cal = out[pcols].to_numpy()
    fitted_on = np.vstack([p, [[0.25, 0.25, 0.5]]])  # rows with category mass, `invalid` too
    assert np.allclose(cal[:300], BatchCalibrator().fit(fitted_on).transform(p))
    total = cal.sum(axis=1) + out["sentiment_outside"].to_numpy()
    assert np.allclose(total[[0, 1, 2, 301, 302]], 1.0)
    assert np.isnan(cal[300]).all() and out.loc[300, "sentiment_error"] == "server error"
    assert out.loc[301, "sentiment"] == "<invalid>" and out.loc[302, "sentiment"] == "<invalid>"
    assert out.loc[302, "sentiment_outside"] == pytest.approx(0.6)  # `other` is kept
    labels = np.asarray(var.labels)[cal[:300].argmax(axis=1)]
    assert list(out["sentiment"][:300]) == list(labels)
    assert (labels != table["sentiment"][:300].to_numpy()).any()  # the correction moved some
    assert np.allclose(out["sentiment_confidence"][:300], cal[:300].max(axis=1))
    params = info["variables"]["sentiment"]
    assert info["method"] == "batch" and params["calibrated_rows"] == 301
    # calibrating the output again starts from the raw columns: same result (a resumed run)
    again, info2 = calibrate_table(out, sentiment_book, "batch")
    assert again.columns.tolist() == out.columns.tolist()
    assert np.allclose(again[pcols].to_numpy()[:300], cal[:300]) and info2 == info


def test_table_fit_cross_fits_gold_rows(sentiment_book: Codebook) -> None:
    p, y, _ = synthetic(300, [1 / 3] * 3, sharpness=2.0)
    table = coded_table(sentiment_book, p)
    labels = sentiment_book.variables[0].labels
    gold = [labels[c] if i % 2 == 0 else "" for i, c in enumerate(y)] + ["", "", ""]
    table.insert(0, "gold", gold)
    out, info = calibrate_table(table, sentiment_book, "fit", gold={"sentiment": "gold"})
    cal = out[prob_columns(sentiment_book.variables[0])].to_numpy()
    has = np.arange(300) % 2 == 0
    cv = cross_fit(p[has], y[has], folds=5)
    assert np.allclose(cal[:300][has], cv.probs)
    full = FitCalibrator().fit(p[has], y[has])
    assert np.allclose(cal[:300][~has], full.transform(p[~has]))
    params = info["variables"]["sentiment"]
    assert params["cross_fitted_rows"] == 150 and params["folds"] == 5
    assert params["temperature"] == pytest.approx(full.temperature, abs=1e-6)
    table.loc[5, "gold"] = "furious"
    with pytest.raises(DataError, match="row 6: 'furious'"):
        calibrate_table(table, sentiment_book, "fit", gold={"sentiment": "gold"})
    with pytest.raises(UsageError, match="human codes"):
        calibrate_table(table, sentiment_book, "fit")


# --- the embedded model: Coder(calibrate=...) and `textcoder code --calibrate` ---

TEXTS = ["I love it", "Awful, just awful.", "The bus leaves at nine.", "Great day!", ""]


def test_coder_calibrates_with_content_free_inputs(
    local_backend: Any, sentiment_book: Codebook
) -> None:
    df = pd.DataFrame({"text": TEXTS})
    raw = Coder(sentiment_book, backend=local_backend, scoring="exact", calibrate="none")
    raw = raw.code_frame(df, progress=False)
    coder = Coder(sentiment_book, backend=local_backend, scoring="exact", calibrate="prior")
    out = coder.code_frame(df, progress=False)
    var = sentiment_book.variables[0]
    pcols, rawcols = prob_columns(var), prob_columns(var, "rawp")
    assert np.allclose(out[rawcols].to_numpy(), raw[pcols].to_numpy(), equal_nan=True)
    sums = out[pcols].sum(axis=1) + out["sentiment_outside"]
    assert np.allclose(sums, 1.0)
    assert out.loc[4, "sentiment"] == "<invalid>"
    info = coder.manifest()["calibration"]
    assert info["method"] == "prior" and info["content_free_inputs"] == list(CONTENT_FREE_INPUTS)
    prior = info["variables"]["sentiment"]["model_prior"]
    assert len(prior) == 3 and sum(prior) == pytest.approx(1.0, abs=1e-5)
    again = Coder(sentiment_book, backend=local_backend, scoring="exact", calibrate="prior")
    assert again.code_frame(df, progress=False).equals(out)  # deterministic
    with pytest.raises(UsageError, match="unknown calibration"):
        Coder(sentiment_book, backend=local_backend, calibrate="platt")


def test_cli_fit_with_gold(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    gold = ["positive", "negative", "neutral", "positive", "", "negative"]
    texts = [*TEXTS[:4], "Meh.", "Terrible service"]
    pd.DataFrame({"text": texts, "gold": gold}).to_csv(data, index=False)
    book = str(EXAMPLES / "sentiment.yaml")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": texts, "gold": ["positive", "furious", *gold[2:]]}).to_csv(bad)
    proc = textcoder_cli(
        "code", str(bad), "--codebook", book, "--calibrate", "fit", "--gold", "gold"
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "row 2" in proc.stderr and "furious" in proc.stderr and str(bad) in proc.stderr
    proc = textcoder_cli("code", str(data), "--codebook", book, "--calibrate", "fit")
    assert proc.returncode == 1 and "--gold" in proc.stderr
    out = tmp_path / "o.csv"
    proc = textcoder_cli(
        "code", str(data), "--codebook", book, "--scoring", "exact", "-o", str(out),
        "--calibrate", "fit", "--gold", "gold", "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    coded = pd.read_csv(out)
    assert "sentiment_rawp_neutral" in coded.columns and "sentiment_p_neutral" in coded.columns
    manifest = json.loads(out.with_name("o.csv.manifest.json").read_text())
    cal = manifest["calibration"]
    assert cal["method"] == "fit" and cal["gold"] == {"sentiment": "gold"}
    assert cal["variables"]["sentiment"]["cross_fitted_rows"] == 5


def test_evaluate_shows_raw_beside_calibrated(tmp_path: Path, sentiment_book: Codebook) -> None:
    from textcoder.evaluate import evaluate_files

    p, y, _ = synthetic(300, [1 / 3] * 3)
    table = coded_table(sentiment_book, p)
    labels = sentiment_book.variables[0].labels
    table.insert(0, "gold", [labels[c] for c in y] + ["", "", ""])
    out, info = calibrate_table(table, sentiment_book, "batch")
    path = tmp_path / "c.csv"
    out.to_csv(path, index=False)
    manifest = {
        "codebook": {"path": sentiment_book.path, "sha256": sentiment_book.sha256},
        "calibration": info,
    }
    path.with_name("c.csv.manifest.json").write_text(json.dumps(manifest))
    (raw, r_raw), (cal, r_cal) = evaluate_files([path], "gold", resamples=20)
    assert raw.name == "c.csv (raw)" and cal.name == "c.csv (batch)"
    assert r_raw["accuracy"]["value"] == pytest.approx((p.argmax(axis=1) == y).mean(), abs=1e-6)
    assert r_cal["accuracy"]["value"] != r_raw["accuracy"]["value"]
    for r in (r_raw, r_cal):
        assert r["ece"]["value"] is not None and r["brier"]["value"] is not None
