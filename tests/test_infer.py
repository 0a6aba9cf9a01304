"""`textcoder infer`: reading coded tables and human codes, the JSON it writes, the warnings,
groups, the target width and regressions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textcoder._exceptions import DataError
from textcoder.infer import Source, infer
from textcoder.infer.design import draw_table

from .conftest import textcoder

LABELS = ["negative", "neutral", "positive"]


def coded(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """A plain coded table (no manifest): label, probabilities, the truth, two covariates."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, size=n, p=[0.25, 0.25, 0.5])
    logits = np.stack([2.0 * (truth == c) for c in LABELS], axis=1) + rng.normal(0, 1, (n, 3))
    logits[:, 2] += 1.0  # biased toward positive
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": "t"})
    df["party"] = rng.choice(["A", "B"], size=n)
    df["year"] = rng.integers(2000, 2006, size=n)
    df["sentiment"] = np.array(LABELS)[p.argmax(axis=1)]
    for j, lab in enumerate(LABELS):
        df[f"sentiment_p_{lab}"] = p[:, j]
    df["sentiment_outside"] = 0.0
    df["truth"] = truth
    return df


def with_gold(df: pd.DataFrame, n: int = 200, **kw: object) -> pd.DataFrame:
    _, marked, _ = draw_table(df, n, seed=1, **kw)  # type: ignore[arg-type]
    marked["gold"] = marked["truth"].where(marked["sampled"], "")
    return marked


def test_json_keys_and_methods(tmp_path: Path) -> None:
    path = tmp_path / "coded.csv"
    with_gold(coded()).to_csv(path, index=False)
    out = tmp_path / "out.json"
    run = textcoder(
        "infer", str(path), "--gold", "gold", "--variable", "sentiment", "--json", str(out)
    )
    assert run.returncode == 0, run.stderr
    assert "ppi" in run.stdout and "effective n" in run.stdout
    data = json.loads(out.read_text())
    for key in ("variable", "n_total", "n_coded", "level", "prevalence", "effective_n"):
        assert key in data
    assert (data["variable"], data["n_total"], data["n_coded"], data["level"]) == (
        "sentiment",
        1200,
        200,
        0.95,
    )
    assert set(data["prevalence"]) == set(LABELS)
    for cells in data["prevalence"].values():
        assert set(cells) == {"model", "human", "ppi", "dsl"}
        for c in cells.values():
            assert c["ci_low"] <= c["estimate"] <= c["ci_high"]
    assert data["warnings"] == []  # sample_prob present, >= 30 per category


def test_warnings_one_line_each(tmp_path: Path) -> None:
    df = with_gold(coded(), n=60, strata="sentiment", allocation="equal")
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    run = textcoder("infer", str(path), "--gold", "gold", "--variable", "sentiment")
    assert run.returncode == 0, run.stderr
    lines = [x for x in run.stderr.splitlines() if x.startswith("textcoder: warning:")]
    assert any("fewer than 30" in x for x in lines)
    assert "ppi (IPW)" in run.stdout  # the weighted form, named in the table
    df.drop(columns=["sample_prob", "sampled"]).to_csv(path, index=False)
    run = textcoder("infer", str(path), "--gold", "gold", "--variable", "sentiment")
    assert "no sample_prob column: a simple random sample is assumed" in run.stderr


def test_gold_file_joined_on_id_and_foreign_ids(tmp_path: Path) -> None:
    df = coded()
    sample, _, _ = draw_table(df, 150, seed=2)
    codes = sample[["id", "sample_prob"]].assign(sentiment_human=sample["truth"])
    codes = pd.concat([codes, pd.DataFrame({"id": ["elsewhere"], "sentiment_human": ["neutral"]})])
    (tmp_path / "codes.csv").write_text(codes.to_csv(index=False))
    df.drop(columns=["truth"]).to_csv(tmp_path / "coded.csv", index=False)
    result = infer(
        tmp_path / "coded.csv",
        Source(gold_file=str(tmp_path / "codes.csv")),
        variable="sentiment",
    )
    assert result["n_coded"] == 150
    assert any("1 of 151 ids" in w and "another table" in w for w in result["warnings"])
    gold_col = with_gold(df)  # the same figures from a gold column and from the file
    assert (
        result["prevalence"]["neutral"]["model"]
        == infer_frame(gold_col, tmp_path)["prevalence"]["neutral"]["model"]
    )


def infer_frame(df: pd.DataFrame, tmp_path: Path, **kw: object) -> dict:  # type: ignore[type-arg]
    path = tmp_path / "frame.csv"
    df.to_csv(path, index=False)
    return infer(path, Source(gold="gold"), variable="sentiment", **kw)  # type: ignore[arg-type]


def test_by_group_target_width_and_regression(tmp_path: Path) -> None:
    result = infer_frame(
        with_gold(coded()),
        tmp_path,
        by="party",
        target_width=0.03,
        formula="negative ~ party + year",
        family="binomial",
    )
    assert set(result["by"]) == {"A", "B"}
    assert sum(g["n_coded"] for g in result["by"].values()) == 200
    assert set(result["by"]["A"]["prevalence"]) == set(LABELS)
    more = result["more_needed"]["positive"]
    assert more["human"] > more["ppi"] >= 0
    reg = result["regression"]
    assert set(reg) == {"model", "ppi", "dsl"}
    assert set(reg["dsl"]) == {"Intercept", "party[T.B]", "year"}  # year read as a number
    assert reg["dsl"]["year"]["ci_low"] < reg["dsl"]["year"]["ci_high"]


def test_linear_dsl_is_ols_of_the_pseudo_outcome(tmp_path: Path) -> None:
    import statsmodels.api as sm

    df = with_gold(coded())
    result = infer_frame(df, tmp_path, formula="positive ~ year", dsl_prediction="raw")
    r = df["gold"] != ""
    pi = df["sample_prob"].to_numpy() * (r.sum() / df["sample_prob"].sum())
    f = df["sentiment_p_positive"].to_numpy()
    y = (df["gold"] == "positive").to_numpy(float)
    pseudo = np.where(r, f + (y - f) / pi, f)
    fit = sm.OLS(pseudo, sm.add_constant(df["year"].to_numpy(float))).fit(cov_type="HC0")
    assert result["regression"]["dsl"]["year"]["estimate"] == pytest.approx(fit.params[1])
    lo = fit.conf_int(0.05)[1][0]
    assert result["regression"]["dsl"]["year"]["ci_low"] == pytest.approx(lo)


def test_labels_only_and_bad_codes(tmp_path: Path) -> None:
    df = with_gold(coded()).drop(
        columns=[*(f"sentiment_p_{x}" for x in LABELS), "sentiment_outside"]
    )
    with pytest.raises(DataError, match="--codebook"):  # no probabilities, no manifest
        infer_frame(df, tmp_path)
    book = tmp_path / "book.yaml"
    book.write_text(
        "instructions: x\nvariables:\n  - name: sentiment\n    categories: [negative, neutral, positive]\n"
    )
    path = tmp_path / "labels.csv"
    df.to_csv(path, index=False)
    from textcoder.codebook import Codebook

    result = infer(path, Source(gold="gold"), codebook=Codebook.from_yaml(book))
    assert result["prevalence"]["positive"]["model"]["estimate"] == pytest.approx(
        (df["sentiment"] == "positive").mean()
    )
    df.loc[df["gold"] != "", "gold"] = ["angry", *df.loc[df["gold"] != "", "gold"][1:]]
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row \d+: human code 'angry' in 'gold'"):
        infer(path, Source(gold="gold"), codebook=Codebook.from_yaml(book))


def test_crossfit_is_out_of_fold_and_uses_the_covariates(tmp_path: Path) -> None:
    from textcoder.infer import load
    from textcoder.infer.crossfit import crossfit

    df = coded(seed=4)
    rng = np.random.default_rng(4)
    # the truth leans on `party`, which the model ignores: a covariate worth having
    df["party"] = np.where((df["truth"] == "negative") ^ (rng.random(len(df)) < 0.1), "A", "B")
    path = tmp_path / "c.csv"
    with_gold(df, n=300).to_csv(path, index=False)
    prep = load(path, Source(gold="gold"), variable="sentiment")
    g = crossfit(prep, ["party"])
    i = int(np.flatnonzero(prep.r)[0])
    prep.y[i] = 1.0 - prep.y[i]  # a row's own code never enters its prediction
    assert np.allclose(crossfit(prep, ["party"])[i], g[i])
    prep.y[i] = 1.0 - prep.y[i]
    plain = infer(path, Source(gold="gold"), variable="sentiment")
    fitted = infer(path, Source(gold="gold"), variable="sentiment", covariates=["party"])
    assert fitted["covariates"] == ["party"]
    se = lambda r: r["prevalence"]["negative"]["dsl"]["se"]  # noqa: E731
    assert se(fitted) < se(plain)


def test_dsl_cross_fits_by_default_and_raw_is_an_option(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    with_gold(coded(seed=5)).to_csv(path, index=False)
    out = tmp_path / "r.json"
    base = ["infer", str(path), "--gold", "gold", "--variable", "sentiment"]
    run = textcoder(*base, "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "dsl prediction: cross-fitted (5 folds)" in run.stdout
    fitted = json.loads(out.read_text())
    assert fitted["dsl_prediction"].startswith("cross-fitted (5 folds)")
    raw = infer(path, Source(gold="gold"), variable="sentiment", dsl_prediction="raw")
    assert raw["dsl_prediction"].startswith("raw")
    # the model over-calls positive: a fitted g tracks the human code better than f itself
    se = lambda r, lab: r["prevalence"][lab]["dsl"]["se"]  # noqa: E731
    assert se(fitted, "positive") < se(raw, "positive")
    refused = textcoder(*base, "--dsl-prediction", "raw", "--covariates", "party")
    assert refused.returncode == 1 and "--covariates" in refused.stderr


def test_intervals_are_clipped_to_the_unit_interval_and_marked(tmp_path: Path) -> None:
    df = with_gold(coded())
    rare = df.index[(df["gold"] != "")][:4]
    df["group"] = "big"
    df.loc[rare, "group"] = "small"  # 4 coded rows and nothing else: wide intervals
    df.loc[rare, "gold"] = "positive"
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "r.json"
    run = textcoder(
        "infer",
        str(path),
        "--gold",
        "gold",
        "--variable",
        "sentiment",
        "--by",
        "group",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    small = json.loads(out.read_text())["by"]["small"]["prevalence"]
    cells = [c for row in small.values() for c in row.values() if c["estimate"] is not None]
    assert any(c["clipped"] for c in cells)
    for c in cells:
        assert 0.0 <= c["ci_low"] <= c["estimate"] <= c["ci_high"] <= 1.0
    assert "†" in run.stdout and "clipped to [0, 1]" in run.stdout
