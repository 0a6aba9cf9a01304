"""`textcoder robustness`: variants, figures equal to scikit-learn's and krippendorff's on the
columns it writes, and a second run that sends nothing (base codes from the coded run)."""

from __future__ import annotations

import json
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from textcoder import Codebook
from textcoder.robustness import make_variants, measure
from textcoder.robustness.measure import column

from .conftest import EXAMPLES, textcoder, wait_for

BOOK = EXAMPLES / "vader_sentiment.yaml"


def test_variants_change_one_thing() -> None:
    book = Codebook.from_yaml(BOOK)
    variants, notes = make_variants(book, ["order", "descriptions", "examples", "instructions"])
    names = [v.name for v in variants]
    assert names == [
        "order-1",
        "order-2",
        "order-3",
        "no-descriptions",
        "instructions-1",
        "instructions-2",
    ]
    assert notes == ["examples: the codebook has no examples to vary"]
    labels = book.variables[0].labels
    for v in variants[:3]:
        got = v.codebook.variables[0].labels
        assert sorted(got) == sorted(labels) and got != labels
    assert all(c.description is None for c in variants[3].codebook.variables[0].categories)
    assert variants[4].codebook.instructions == book.paraphrases[0]
    again, _ = make_variants(book, ["order"])
    assert [v.codebook for v in again] == [v.codebook for v in variants[:3]]


def test_example_variants_from_a_pool() -> None:
    book = Codebook.from_yaml(BOOK).model_copy(
        update={
            "examples_from": Codebook.from_yaml_text(
                "instructions: x\ncategories: [a, b]\nexamples_from: {file: p.csv, k: 2}\n"
            ).examples_from
        }
    )
    variants, notes = make_variants(book, ["examples"], draws=2)
    assert [v.name for v in variants] == ["no-examples", "examples-1", "examples-2"]
    assert variants[0].codebook.examples_from is None
    spec1, spec2 = (v.codebook.examples_from for v in variants[1:])
    assert spec1 is not None and spec2 is not None
    assert spec1.select == spec2.select == "random" and spec1.seed != spec2.seed
    assert notes == []


def test_figures_equal_sklearn_and_krippendorff() -> None:
    var = Codebook.from_yaml(BOOK).variables[0]
    rng = np.random.default_rng(3)
    labels = var.labels
    table = pd.DataFrame({"id": range(40), "text": [f"t{i}" for i in range(40)]})
    table["gold"] = rng.choice(labels, 40)
    names = ["base", "a", "b"]
    for n in names:
        table[column(var.name, n)] = rng.choice([*labels, "invalid"], 40, p=[0.3, 0.3, 0.35, 0.05])
    table.loc[5, column(var.name, "b")] = None  # a failed request
    about = {n: (n, n) for n in names}
    fig = measure(table, var, names, about, gold="gold")
    idx = {lab: i for i, lab in enumerate([*labels, "invalid"])}
    base = table[column(var.name, "base")]
    for row in fig["variants"]:
        other = table[column(var.name, row["variant"])]
        ok = other.notna() & base.notna()
        b, o = base[ok].map(idx), other[ok].map(idx)
        assert row["agreement"] == pytest.approx((b == o).mean())
        assert row["flip_share"] == pytest.approx((b != o).mean())
        if row["variant"] != "base":
            assert row["cohen_kappa"] == pytest.approx(cohen_kappa_score(b, o, labels=range(4)))
        g = table.loc[other.notna(), "gold"].map(idx)
        want = f1_score(g, other[other.notna()].map(idx), labels=range(3), average="macro")
        assert row["macro_f1"] == pytest.approx(want)
        share = other[other.notna()].value_counts(normalize=True)
        assert row["shares"]["positive"] == pytest.approx(share.get("positive", 0.0))
    data = np.array(
        [
            [idx[v] if isinstance(v, str) else np.nan for v in table[column(var.name, n)]]
            for n in names
        ],
        dtype=float,
    )
    data[data == 3] = np.nan  # ordinal: invalid has no rank
    want_alpha = krippendorff.alpha(
        reliability_data=data, value_domain=[0, 1, 2], level_of_measurement="ordinal"
    )
    assert fig["krippendorff_alpha"] == pytest.approx(want_alpha)


def test_robustness_reuses_the_coded_run_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    data = tmp_path / "tweets.csv"
    pd.read_csv(EXAMPLES / "vader_tweets.csv").head(4).to_csv(data, index=False)
    coded = tmp_path / "coded.csv"
    done = textcoder(
        "code",
        str(data),
        "-c",
        str(BOOK),
        "--id-column",
        "id",
        "-o",
        str(coded),
        "-q",
        "--calibrate",
        "none",
    )
    assert done.returncode == 0, done.stderr
    args = [
        "robustness",
        str(coded),
        "-c",
        str(BOOK),
        "--variants",
        "order,instructions",
        "--orders",
        "1",
        "--gold",
        "gold",
        "--json",
        str(tmp_path / "r.json"),
        "--report",
        str(tmp_path / "r.html"),
        "-q",
    ]
    first = textcoder(*args)
    assert first.returncode == 0, first.stderr
    figs = json.loads((tmp_path / "r.json").read_text())
    assert figs["cost"]["base"] == {"requests": 0, "reused": 4}  # from the coded run's store
    assert figs["cost"]["order-1"]["requests"] == 4
    assert figs["store"] == str(coded) + ".textcoder.sqlite"
    out = pd.read_csv(tmp_path / "coded.robustness.csv")
    assert list(out.columns[:3]) == ["id", "text", "gold"]
    assert out["sentiment.base"].tolist() == pd.read_csv(coded)["sentiment"].tolist()
    cols = [f"sentiment.{n}" for n in ("base", "order-1", "instructions-1", "instructions-2")]
    assert [c for c in out.columns if c.startswith("sentiment.")] == cols
    page = (tmp_path / "r.html").read_text()
    assert "Robustness to prompt variants" in page and "data:image/png;base64," in page
    assert "http" not in page.split("<body>")[1]  # nothing fetched
    second = textcoder(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads((tmp_path / "r.json").read_text())
    assert again["requests_sent"] == 0
    assert again["variables"] == figs["variables"]


def test_ctrl_c_keeps_answers_says_how_to_resume_and_progress_counts(tmp_path: Path) -> None:
    """SIGINT in the middle of a variant: exit 130 with a resume hint and no asyncio noise;
    the same command again finishes, reusing what the first run stored. The server answers the
    base variant and part of order-1, then holds every later request in flight, so the signal
    lands mid-variant (the run cannot finish first); the held requests are released once the
    run says it is finishing them, and their answers are kept too."""
    import os
    import signal
    import subprocess
    import sys

    from .conftest import ROOT
    from .flaky_server import FlakyServer

    n, concurrency, into = 40, 2, 10  # rows; requests at once; order-1 answers before the hold
    data = tmp_path / "posts.csv"
    pd.DataFrame({"id": range(n), "text": [f"post number {i}" for i in range(n)]}).to_csv(
        data, index=False
    )
    answered = n + into
    kept = answered + concurrency  # the requests in flight at the signal are answered too
    err_path = tmp_path / "err.txt"
    with FlakyServer(hold_after=answered) as server:
        args = [sys.executable, "-m", "textcoder", "robustness", str(data), "-c", str(BOOK)]
        args += ["--base-url", server.url, "--api-key", "k", "-m", "gpt-4o-mini"]
        args += ["--scoring", "logprobs", "--variants", "order", "--orders", "2", "-n", str(n)]
        args += ["--id-column", "id", "--concurrency", str(concurrency)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, env=env
            )

        try:
            held = "every request at once held"
            wait_for(lambda: len(server.requests()) >= kept, held, proc, err_path)
            assert "variant 2 of 3: order-1" in err_path.read_text()
            os.kill(proc.pid, signal.SIGINT)
            finishing = "finishing the requests in flight"
            wait_for(
                lambda: finishing in err_path.read_text(), "the signal handled", proc, err_path
            )
            server.release()
            assert proc.wait(timeout=60) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        first = err_path.read_text()
        assert "variant 1 of 3: base" in first and "variant 3 of 3" not in first
        assert "Run the same command again to resume" in first
        assert "Task was destroyed" not in first and "Traceback" not in first
        assert len(server.requests()) == kept  # nothing asked after the signal
        server.hold_after = None
        again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert len(server.requests()) == 3 * n  # the rerun asked only what the first lacked
    assert again.returncode == 0, again.stderr
    assert "variant 3 of 3: order-2" in again.stderr
    assert f"{3 * n - kept} requests sent, {kept} answers from the store" in again.stderr
