"""Drawn rows without a human code (ties left by annotate): counted, refused or adjusted for
under the named assumption (missing at random within the stratum), the same by both routes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textcoder._exceptions import DataError
from textcoder.infer import Source, infer
from textcoder.infer import estimators as est
from textcoder.infer.design import draw_table
from textcoder.infer.inclusion import MAR, adjust

from .conftest import textcoder
from .test_infer import coded


def sample_with_gaps(tmp_path: Path, gaps: int = 12) -> tuple[Path, Path, Path]:
    """The coded table, a gold file of a stratified sample with `gaps` codes left empty
    (as annotate's ties), and the marked table with the same codes in a column."""
    df = coded(seed=3)
    sample, marked, _ = draw_table(df, 150, seed=4, strata="sentiment")
    codes = sample["truth"].copy()
    codes.iloc[:gaps] = ""
    gold = sample[["id", "sample_prob"]].assign(sentiment_human=codes)
    gold.to_csv(tmp_path / "codes.csv", index=False)
    df.drop(columns=["truth"]).to_csv(tmp_path / "coded.csv", index=False)
    marked["gold"] = marked["id"].map(dict(zip(sample["id"], codes, strict=True))).fillna("")
    marked.drop(columns=["truth"]).to_csv(tmp_path / "marked.csv", index=False)
    return tmp_path / "coded.csv", tmp_path / "codes.csv", tmp_path / "marked.csv"


def test_gold_file_and_marked_table_agree_and_name_the_assumption(tmp_path: Path) -> None:
    table, codes, marked = sample_with_gaps(tmp_path)
    by_file = infer(table, Source(gold_file=str(codes)), variable="sentiment")
    by_mark = infer(marked, Source(gold="gold"), variable="sentiment")
    assert by_file["n_coded"] == by_mark["n_coded"] == 138
    assert by_file["design"] == by_mark["design"]
    assert by_file["design"] == {
        "drawn": 150,
        "coded": 138,
        "missing_codes": 12,
        "handling": MAR,
    }
    for lab in ("negative", "neutral", "positive"):
        assert by_file["prevalence"][lab]["dsl"]["estimate"] == pytest.approx(
            by_mark["prevalence"][lab]["dsl"]["estimate"], abs=1e-9
        )
    assert any("12 of 150 drawn rows have no human code" in w for w in by_file["warnings"])
    assert any("third coder" in w for w in by_file["warnings"])


def test_cli_refuses_or_adjusts(tmp_path: Path) -> None:
    table, codes, _ = sample_with_gaps(tmp_path, gaps=3)
    args = ["infer", str(table), "--gold-file", str(codes), "--variable", "sentiment"]
    refused = textcoder(*args, "--missing-codes", "refuse")
    assert refused.returncode == 1
    assert "3 of 150 drawn rows have no human code" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out = tmp_path / "r.json"
    run = textcoder(*args, "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "missing at random within the stratum" in run.stderr
    assert "drawn rows without a human code: 3 of 150" in run.stdout
    assert json.loads(out.read_text())["design"]["missing_codes"] == 3


def test_a_stratum_without_any_code_is_refused(tmp_path: Path) -> None:
    table, codes, _ = sample_with_gaps(tmp_path, gaps=0)
    gold = pd.read_csv(codes, keep_default_na=False)
    gold.loc[gold["sentiment_human"] == "negative", "sentiment_human"] = ""
    gold.loc[gold["sample_prob"] == gold["sample_prob"].min(), "sentiment_human"] = ""
    gold.to_csv(codes, index=False)
    with pytest.raises(DataError, match="no drawn row of stratum"):
        infer(table, Source(gold_file=str(codes)), variable="sentiment")


def test_adjustment_removes_the_bias_of_codes_missing_by_stratum() -> None:
    """200 stratified draws; 40% of the codes of one stratum go missing. Treating those rows
    as never drawn is biased; the adjustment is not, and its intervals cover."""
    rng = np.random.default_rng(11)
    rows, draws = 4000, 200
    y = (rng.random(rows) < 0.25).astype(float)
    f = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.15, rows), 0, 1)
    stratum = np.where(f > 0.45, "hi", "lo")
    frame = pd.DataFrame({"sample_stratum": stratum})
    naive, adjusted, covered = [], [], 0
    for _ in range(draws):
        drawn = np.zeros(rows, dtype=bool)
        pi = np.zeros(rows)
        for h, k in (("hi", 150), ("lo", 150)):
            members = np.flatnonzero(stratum == h)
            drawn[rng.choice(members, k, replace=False)] = True
            pi[members] = k / members.size
        r = drawn & ~((stratum == "hi") & (rng.random(rows) < 0.4))
        naive.append(float(est.dsl(f, y, r, pi).estimate))
        e = est.dsl(f, y, r, adjust(frame, pi, r, drawn, "sim"))
        adjusted.append(float(e.estimate))
        lo, hi = e.interval(0.95)
        covered += int(lo <= y.mean() <= hi)
    se = float(np.std(adjusted))
    assert abs(np.mean(adjusted) - y.mean()) < 0.25 * se
    assert abs(np.mean(naive) - y.mean()) > 1.0 * se
    assert covered / draws >= 0.93


def test_without_a_mark_the_probabilities_are_rescaled_as_r_does() -> None:
    from textcoder.infer.inclusion import inclusion

    df = pd.DataFrame({"sample_prob": np.full(1200, 0.1)})  # 120 expected, 100 coded
    r = np.zeros(1200, dtype=bool)
    r[:100] = True
    warnings: list[str] = []
    design = inclusion(df, r, None, warnings, "t.csv")
    assert np.allclose(design.pi, 100 / 1200)
    assert design.handling == "missing at random over the whole sample"
    assert any("scaled by 0.833" in w and "'sampled'" in w for w in warnings)
    quiet: list[str] = []
    r[:121] = True  # one more than expected (a Poisson draw): rescaled without a word
    assert inclusion(df, r, None, quiet, "t.csv").drawn is None and quiet == []
