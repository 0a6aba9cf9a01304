"""`textcoder evaluate`: every metric equals scikit-learn's or `krippendorff`'s on fixed inputs,
the bootstrap intervals behave, the CLI writes metrics.json and a report that renders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from textcoder import Codebook
from textcoder.evaluate import evaluate, load_coded

from .conftest import EXAMPLES, textcoder

LABELS = ["negative", "neutral", "positive"]
HEADLINE = (
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "cohen_kappa",
    "krippendorff_alpha",
    "brier",
    "ece",
)
BOOK = """
name: synthetic
instructions: Code the sentiment.
variables:
  - name: sentiment
    scale: {scale}
    categories: [negative, neutral, positive]
"""


def synthetic(n: int, seed: int = 1) -> pd.DataFrame:
    """A coded table as `textcoder code` writes it: a noisy coder, some `invalid` answers."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    p = rng.dirichlet([1.0, 1.0, 1.0, 0.2], n)
    p[np.arange(n), gold] += rng.uniform(0.0, 1.5, n)
    p /= p.sum(axis=1, keepdims=True)
    label = np.array(LABELS, dtype=object)[p[:, :3].argmax(axis=1)]
    label[rng.random(n) < 0.05] = "<invalid>"
    df = pd.DataFrame({"id": [f"t{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)]})
    df["gold"] = np.array(LABELS)[gold]
    df["sentiment"] = label
    for j, lab in enumerate(LABELS):
        df[f"sentiment_p_{lab}"] = p[:, j]
    df["sentiment_outside"] = p[:, 3]
    df["sentiment_raw"] = label
    df["sentiment_error"] = ""
    return df


def write_coded(df: pd.DataFrame, path: Path, scale: str = "nominal") -> Path:
    """The table and a manifest beside it, naming a codebook file with the scale given."""
    book = path.with_suffix(".yaml")
    book.write_text(BOOK.format(scale=scale))
    cb = Codebook.from_yaml(book)
    df.to_csv(path, index=False)
    manifest = {
        "codebook": {"path": str(book), "sha256": cb.sha256, "variables": {"sentiment": LABELS}},
        "model": "synthetic",
        "input": {"text_column": "text", "id_column": "id"},
    }
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def coded_file(tmp_path: Path) -> Path:
    return write_coded(synthetic(300), tmp_path / "coded.csv")


def test_metrics_equal_sklearn_and_krippendorff(coded_file: Path) -> None:
    df = pd.read_csv(coded_file)
    res = evaluate(load_coded(coded_file, "gold"), resamples=50)
    y, x = df["gold"], df["sentiment"]
    assert res["accuracy"]["value"] == pytest.approx(accuracy_score(y, x), abs=1e-6)
    for avg in ("macro", "weighted"):
        expect = f1_score(y, x, labels=LABELS, average=avg, zero_division=0)
        assert res[f"{avg}_f1"]["value"] == pytest.approx(expect, abs=1e-6)
    p, r, f, s = precision_recall_fscore_support(y, x, labels=LABELS, zero_division=0)
    for i, lab in enumerate(LABELS):
        pc = res["per_category"][lab]
        assert pc["precision"]["value"] == pytest.approx(p[i], abs=1e-6)
        assert pc["recall"]["value"] == pytest.approx(r[i], abs=1e-6)
        assert pc["f1"]["value"] == pytest.approx(f[i], abs=1e-6)
        assert pc["support"] == s[i]
    assert res["cohen_kappa"]["value"] == pytest.approx(cohen_kappa_score(y, x), abs=1e-6)
    codes = {lab: i for i, lab in enumerate([*LABELS, "<invalid>"])}
    alpha = krippendorff.alpha(
        reliability_data=[[codes[v] for v in y], [codes[v] for v in x]],
        level_of_measurement="nominal",
    )
    assert res["krippendorff_alpha"]["value"] == pytest.approx(alpha, abs=1e-6)
    assert res["krippendorff_alpha"]["level"] == "nominal"
    probs = df[[f"sentiment_p_{lab}" for lab in LABELS] + ["sentiment_outside"]].to_numpy()
    brier = brier_score_loss([codes[v] for v in y], probs, labels=[0, 1, 2, 3], scale_by_half=False)
    assert res["brier"]["value"] == pytest.approx(brier, abs=1e-6)
    cm = res["confusion_matrix"]
    assert cm["labels"] == [*LABELS, "<invalid>"]
    assert cm["matrix"] == confusion_matrix(y, x, labels=cm["labels"]).tolist()
    assert res["invalid_share"]["value"] == pytest.approx((x == "<invalid>").mean(), abs=1e-6)
    assert res["mean_other"]["value"] == pytest.approx(probs[:, 3].mean(), abs=1e-6)


def test_ece_is_the_binwise_gap(coded_file: Path) -> None:
    """ECE against the textbook definition: 15 equal bins of the top category's probability."""
    df = pd.read_csv(coded_file)
    probs = df[[f"sentiment_p_{lab}" for lab in LABELS]].to_numpy()
    conf = probs.max(axis=1)
    correct = np.array(LABELS)[probs.argmax(axis=1)] == df["gold"].to_numpy()
    gap = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if inside.any():
            gap += inside.sum() * abs(correct[inside].mean() - conf[inside].mean())
    res = evaluate(load_coded(coded_file, "gold"), resamples=20)
    assert res["ece"]["value"] == pytest.approx(gap / len(df), abs=1e-6)
    assert sum(res["reliability"]["count"]) == len(df)


def test_ordinal_alpha_where_the_codebook_says_ordinal(tmp_path: Path) -> None:
    df = synthetic(200)
    path = write_coded(df, tmp_path / "ord.csv", scale="ordinal")
    res = evaluate(load_coded(path, "gold"), resamples=20)
    assert res["krippendorff_alpha"]["level"] == "ordinal"
    code = {lab: float(i) for i, lab in enumerate(LABELS)} | {"<invalid>": np.nan}
    alpha = krippendorff.alpha(
        reliability_data=[[code[v] for v in df["gold"]], [code[v] for v in df["sentiment"]]],
        value_domain=[0, 1, 2],
        level_of_measurement="ordinal",
    )
    assert res["krippendorff_alpha"]["value"] == pytest.approx(alpha, abs=1e-6)


def test_intervals_contain_the_estimate_and_narrow_with_more_data(tmp_path: Path) -> None:
    small = evaluate(
        load_coded(write_coded(synthetic(60, 3), tmp_path / "s.csv"), "gold"), resamples=300
    )
    large = evaluate(
        load_coded(write_coded(synthetic(1200, 3), tmp_path / "l.csv"), "gold"), resamples=300
    )
    for res in (small, large):
        for key in HEADLINE:
            est = res[key]
            assert est["ci_low"] <= est["value"] <= est["ci_high"], (key, est)
    for key in HEADLINE:
        width_small = small[key]["ci_high"] - small[key]["ci_low"]
        width_large = large[key]["ci_high"] - large[key]["ci_low"]
        assert 0 < width_large < width_small, key


def test_bootstrap_is_seeded(coded_file: Path) -> None:
    coded = load_coded(coded_file, "gold")
    a = evaluate(coded, resamples=100, seed=7)
    b = evaluate(coded, resamples=100, seed=7)
    c = evaluate(coded, resamples=100, seed=8)
    assert a == b
    assert a["macro_f1"]["value"] == c["macro_f1"]["value"]
    assert a["macro_f1"]["ci_low"] != c["macro_f1"]["ci_low"]


def test_failed_rows_and_missing_gold_are_left_out_and_counted(tmp_path: Path) -> None:
    df = synthetic(50)
    df.loc[3, ["sentiment", "sentiment_raw"]] = ""
    df.loc[3, [f"sentiment_p_{lab}" for lab in LABELS] + ["sentiment_outside"]] = np.nan
    df.loc[3, "sentiment_error"] = "timeout"
    df.loc[5, "gold"] = ""
    res = evaluate(load_coded(write_coded(df, tmp_path / "c.csv"), "gold"), resamples=10)
    assert (res["n"], res["n_failed"], res["n_missing_gold"], res["n_rows"]) == (48, 1, 1, 50)


def test_gold_code_outside_the_scheme_is_a_one_line_error(tmp_path: Path) -> None:
    df = synthetic(10)
    df.loc[4, "gold"] = "angry"
    path = write_coded(df, tmp_path / "bad.csv")
    proc = textcoder("evaluate", str(path), "--gold", "gold", "--resamples", "10")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "row 5" in proc.stderr and "'angry'" in proc.stderr
    proc = textcoder("evaluate", str(path), "--gold", "human")
    assert proc.returncode == 1 and "no gold column 'human'" in proc.stderr


def test_cli_compares_files_and_writes_json(tmp_path: Path) -> None:
    a = write_coded(synthetic(80, 1), tmp_path / "model_a.csv")
    b = write_coded(synthetic(80, 2), tmp_path / "model_b.csv")
    out = tmp_path / "metrics.json"
    proc = textcoder(
        "evaluate", str(a), str(b), "--gold", "gold", "--resamples", "50", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "model_a.csv" in proc.stdout and "model_b.csv" in proc.stdout
    assert "Krippendorff" in proc.stdout
    files = json.loads(out.read_text())["files"]
    assert [f["name"] for f in files] == ["model_a.csv", "model_b.csv"]
    one = tmp_path / "one.json"
    assert (
        textcoder(
            "evaluate", str(a), "--gold", "gold", "--resamples", "20", "--json", str(one)
        ).returncode
        == 0
    )
    (data,) = json.loads(one.read_text())["files"]  # one stable shape, one file too
    for key in HEADLINE:
        assert set(data[key]) >= {"value", "ci_low", "ci_high"}
    assert set(data["per_category"]) == set(LABELS)
    assert {"labels", "matrix"} <= set(data["confusion_matrix"])


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    exe = _chromium()
    a = write_coded(synthetic(120, 1), tmp_path / "a.csv")
    b = write_coded(synthetic(120, 2), tmp_path / "b.csv")
    report = tmp_path / "report.html"
    proc = textcoder(
        "evaluate", str(a), str(b), "--gold", "gold", "--resamples", "30", "--report", str(report)
    )
    assert proc.returncode == 0, proc.stderr
    page = report.read_text()
    assert "<script" not in page and 'src="http' not in page and 'href="http' not in page
    assert page.count('src="data:image/png;base64,') == 8  # 3 figures + prevalence, per file
    assert "text " in page  # the disagreements table shows texts
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1100,1400",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), run.stderr[-2000:]
    assert "CONSOLE" not in run.stderr, run.stderr
    # the heatmap's darkest cell (matplotlib's Blues at its top, about rgb(8, 48, 107)) is on screen
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    dark_blue = (np.abs(pixels - [8, 48, 107]).sum(axis=2) < 40).sum()
    assert dark_blue > 200


def test_code_with_gold_evaluates_after_coding(tmp_path: Path) -> None:
    data = tmp_path / "few.csv"
    pd.read_csv(EXAMPLES / "tweets.csv").head(6).to_csv(data, index=False)
    out = tmp_path / "few.coded.csv"
    proc = textcoder(
        "code",
        str(data),
        "-c",
        str(EXAMPLES / "sentiment.yaml"),
        "-o",
        str(out),
        "--scoring",
        "text",
        "--gold",
        "gold",
    )
    assert proc.returncode == 0, proc.stderr
    (metrics,) = json.loads(out.with_name(out.name + ".metrics.json").read_text())["files"]
    assert metrics["n"] == 6 and metrics["gold_column"] == "gold"
    assert "accuracy" in proc.stdout


def test_plain_table_without_manifest_infers_the_variable(tmp_path: Path) -> None:
    """A colleague's table: a label column and probability columns, no manifest, no codebook."""
    df = synthetic(120)
    df["sentiment"] = df["sentiment"].replace("negative", "Negative")  # labels as written
    plain = tmp_path / "plain.csv"
    df.to_csv(plain, index=False)
    out = tmp_path / "m.json"
    proc = textcoder(
        "evaluate", str(plain), "--gold", "gold", "--resamples", "20", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "inferred" in x or "evaluating" in x]
    assert len(lines) == 1, proc.stderr
    assert "'sentiment'" in lines[0] and "negative, neutral, positive" in lines[0]
    (data,) = json.loads(out.read_text())["files"]
    reference = evaluate(
        load_coded(write_coded(synthetic(120), tmp_path / "c.csv"), "gold"), resamples=20
    )
    for key in HEADLINE:
        assert data[key]["value"] == pytest.approx(reference[key]["value"], abs=1e-6), key


def test_hard_labels_alone_evaluate_agreement_only(tmp_path: Path) -> None:
    df = synthetic(150)[["id", "text", "gold", "sentiment"]]
    plain = tmp_path / "labels.csv"
    df.to_csv(plain, index=False)
    out = tmp_path / "m.json"
    report = tmp_path / "r.html"
    proc = textcoder(
        "evaluate", str(plain), "--gold", "gold", "--variable", "sentiment",
        "--resamples", "20", "--json", str(out), "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not available" in proc.stderr
    (data,) = json.loads(out.read_text())["files"]
    y, x = df["gold"], df["sentiment"]
    assert data["accuracy"]["value"] == pytest.approx(accuracy_score(y, x), abs=1e-6)
    assert data["cohen_kappa"]["value"] == pytest.approx(cohen_kappa_score(y, x), abs=1e-6)
    for key in ("brier", "ece", "mean_other"):
        assert data[key]["value"] is None, key
    assert "Brier (lower is better) " in proc.stdout and "n/a" in proc.stdout
    assert report.is_file()
    # without --variable and with no probability columns, the error says what to give
    proc = textcoder("evaluate", str(plain), "--gold", "gold")
    assert proc.returncode == 1 and "--variable" in proc.stderr


def test_gold_file_is_joined_on_the_id_column(tmp_path: Path) -> None:
    """Human codes exported to their own file (`textcoder annotate --export`) join on the id."""
    df = synthetic(100)
    coded = write_coded(df.drop(columns=["gold"]), tmp_path / "coded.csv")
    codes = df[["id", "gold"]].rename(columns={"gold": "V_human"}).iloc[::-1].head(60)
    codes = pd.concat([codes, pd.DataFrame({"id": ["nosuch"], "V_human": ["positive"]})])
    codes.to_csv(tmp_path / "codes.csv", index=False)
    out = tmp_path / "m.json"
    proc = textcoder(
        "evaluate", str(coded), "--gold-file", str(tmp_path / "codes.csv"), "--gold", "V_human",
        "--resamples", "20", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "60 of 100 rows have a code; 1 of its 61 rows match no row here" in proc.stderr
    (data,) = json.loads(out.read_text())["files"]
    assert (data["n"], data["n_missing_gold"]) == (60, 40)
    part = df[df["id"].isin(codes["id"])]
    expect = accuracy_score(part["gold"], part["sentiment"])
    assert data["accuracy"]["value"] == pytest.approx(expect, abs=1e-6)
    twice = pd.concat([codes, codes.head(1)])
    twice.to_csv(tmp_path / "twice.csv", index=False)
    proc = textcoder(
        "evaluate", str(coded), "--gold-file", str(tmp_path / "twice.csv"), "--gold", "V_human"
    )
    assert proc.returncode == 1 and "appears twice" in proc.stderr


def test_plain_table_with_a_category_called_other(tmp_path: Path) -> None:
    """`V_p_other` is a category's column where `V_outside` is there; in a table of
    textcoder 0.1 (no `V_outside`) it is the mass outside the scheme."""
    df = pd.DataFrame(
        {"gold": ["other", "spam", "other", "spam"], "kind": ["other", "spam", "spam", "spam"]}
    )
    df["kind_p_other"] = [0.7, 0.2, 0.4, 0.1]
    df["kind_p_spam"] = [0.3, 0.8, 0.6, 0.9]
    df["kind_outside"] = 0.0
    df.to_csv(tmp_path / "new.csv", index=False)
    coded = load_coded(tmp_path / "new.csv", "gold")
    assert coded.labels == ["other", "spam"] and coded.sample.probs[0].tolist() == [0.7, 0.3, 0.0]
    legacy = df.drop(columns=["kind_outside", "kind_p_other"]).assign(kind_p_other=0.0)
    legacy["gold"] = legacy["kind"] = ["spam", "ham", "ham", "spam"]
    legacy["kind_p_ham"] = 1.0 - legacy["kind_p_spam"]
    legacy.to_csv(tmp_path / "old.csv", index=False)
    coded = load_coded(tmp_path / "old.csv", "gold")
    assert coded.labels == ["spam", "ham"] and coded.sample.probs.shape == (4, 3)


def test_report_with_a_gold_file_shows_prevalence_and_json_has_one_shape(tmp_path: Path) -> None:
    """The annotate -> evaluate path: human codes in their own file reach the report's
    prevalence section, and a calibrated file's JSON lists raw and calibrated entries."""
    df = synthetic(120)
    for lab in LABELS:  # a calibrated file: the model's own probabilities kept beside
        df[f"sentiment_rawp_{lab}"] = df[f"sentiment_p_{lab}"]
    coded = write_coded(df.drop(columns=["gold"]), tmp_path / "coded.csv")
    manifest_file = coded.with_name(coded.name + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest["calibration"] = {"method": "content-free"}
    manifest_file.write_text(json.dumps(manifest))
    codes = df[["id", "gold"]].rename(columns={"gold": "sentiment_human"}).head(50)
    codes.to_csv(tmp_path / "codes.csv", index=False)
    out, report = tmp_path / "m.json", tmp_path / "r.html"
    proc = textcoder(
        "evaluate", str(coded), "--gold-file", str(tmp_path / "codes.csv"),
        "--gold", "sentiment_human", "--resamples", "20", "--json", str(out),
        "--report", str(report),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = report.read_text()
    assert "Not computed" not in page
    assert 'id="prevalence"' in page and "50 human codes of 120 rows" in page
    files = json.loads(out.read_text())["files"]
    assert [(f["name"], f["calibration"]) for f in files] == [
        ("coded.csv (raw)", "raw"),
        ("coded.csv (content-free)", "content-free"),
    ]
    assert all(f["n"] == 50 and "accuracy" in f for f in files)


def test_a_table_rounded_to_few_digits_evaluates_without_warnings(tmp_path: Path) -> None:
    """`textcoder code` writes 4 digits: rows sum to 1 only within rounding, which evaluate
    renormalises (no scikit-learn warning per bootstrap resample)."""
    df = synthetic(60)
    cols = [c for c in df.columns if c.startswith("sentiment_p_") or c == "sentiment_outside"]
    df[cols] = df[cols].round(4)
    coded = write_coded(df, tmp_path / "rounded.csv")
    proc = textcoder("evaluate", str(coded), "--gold", "gold", "--resamples", "20")
    assert proc.returncode == 0, proc.stderr
    assert "do not sum to one" not in proc.stderr and "Warning" not in proc.stderr
