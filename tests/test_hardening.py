"""What real codebooks, servers and users do to a run (issue 12): reserved names, a flaky
probe, two runs on one store, empty tables, joint mode on the embedded model, bad options."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook, CodebookError, Coder, UsageError
from textcoder.output import INVALID, column, prob_columns
from textcoder.scoring.joint import field_value, joint_schema, longest_answer

from .conftest import EXAMPLES, ROOT, textcoder
from .flaky_server import FlakyServer
from .test_runs import _start_held, write_data

BOOK = EXAMPLES / "sentiment.yaml"
ODD = ["other", "invalid", "None", "Unclear", "n/a", "OTHER stuff"]


def _odd_book(tmp_path: Path) -> Path:
    path = tmp_path / "odd.yaml"
    lines = ["instructions: Classify the text.", "categories:"]
    lines += [f"  - {json.dumps(c)}" for c in ODD]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("scoring", ["exact", "logprobs"])
def test_every_label_keeps_its_probability_and_rows_sum_to_one(
    tmp_path: Path, local_backend: object, scoring: str
) -> None:
    book = Codebook.from_yaml(_odd_book(tmp_path))
    var = book.variables[0]
    df = pd.DataFrame({"text": ["I loved it", "No idea what this is", ""]})
    with Coder(book, backend=local_backend, scoring=scoring) as coder:  # type: ignore[arg-type]
        out = coder.code_frame(df, progress=False)
    cols = prob_columns(var)
    assert len(set(cols)) == len(ODD) and all(c in out.columns for c in cols)
    assert "label_p_other" in cols and "label_p_invalid" in cols
    total = out[cols].sum(axis=1) + out[column("label", "outside")]
    assert all(math.isclose(t, 1.0, abs_tol=1e-9) for t in total)
    labels = set(out["label"])
    assert labels <= {*var.labels, INVALID}
    assert out["label"].iloc[2] == INVALID  # the empty text: told apart from category `invalid`


def test_reserved_and_clashing_labels_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(CodebookError, match="reserved"):
        Codebook.from_yaml_text("instructions: x\ncategories: [a, <invalid>]\n")
    with pytest.raises(CodebookError, match=r"n a.*n/a|n/a.*n a"):
        Codebook.from_yaml_text("instructions: x\ncategories: ['n/a', 'n a']\n")


def test_a_flaky_probe_is_retried_like_any_request(tmp_path: Path) -> None:
    plan = {"Is the sky blue": ["500", "429", "drop", "ok"]}
    with FlakyServer(plan) as server:
        with Coder(BOOK, base_url=server.url, api_key="sk-test", timeout=2.0) as coder:
            assert coder.scoring == "logprobs"
        probes = [e.action for e in server.requests() if "Is the sky blue" in e.key]
        assert probes[:4] == ["500", "429", "drop", "ok"], probes
    with FlakyServer(default="500") as server:
        proc = textcoder(
            "code", str(EXAMPLES / "tweets.csv"), "-c", str(BOOK), "--base-url", server.url,
            "--max-retries", "2", "-o", str(tmp_path / "o.csv"),
        )  # fmt: skip
        assert proc.returncode == 1
        assert "cannot probe" in proc.stderr and "Traceback" not in proc.stderr
        assert "gave up after 2 retries" in proc.stderr


def test_a_second_live_run_on_the_store_stops_before_sending(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    write_data(data, 40)
    store = tmp_path / "d.coded.csv.textcoder.sqlite"
    with FlakyServer() as server:
        args = ["code", str(data), "-c", str(BOOK), "--id-column", "id", "--base-url", server.url]
        args += ["--scoring", "logprobs", "--concurrency", "1"]
        first = _start_held(args, store, server)  # live till killed below
        server.phase = 2
        second = subprocess.run(
            [sys.executable, "-m", "textcoder", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and str(store) in second.stderr
        assert "Traceback" not in second.stderr
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
        server.phase = 3  # a lock left by a killed run blocks nothing
        third = subprocess.run(
            [sys.executable, "-m", "textcoder", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert third.returncode == 0, third.stderr
        paid = server.answers_by_key()
    out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
    assert len(out) == 40 and not any(out["sentiment_error"])
    # nothing paid twice: the request in flight when the first run was killed was never answered
    assert len(paid) == 40 and set(paid.values()) == {1}


def test_a_table_with_no_rows_gives_an_empty_output(tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_text("id,text\n")
    out = tmp_path / "empty.coded.csv"
    proc = textcoder("code", str(data), "-c", str(BOOK), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "coded 0 rows" in proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 0 and {"id", "text", "sentiment", "sentiment_outside"} <= set(table)
    assert json.loads(out.with_name(out.name + ".manifest.json").read_text())["rows"] == 0


@pytest.mark.parametrize("rows", ["", "1,\n2,   \n"], ids=["no rows", "only empty texts"])
def test_nothing_to_calibrate_sends_no_content_free_request(tmp_path: Path, rows: str) -> None:
    """Content-free inputs measure a bias to correct; with no row that has probabilities
    there is nothing to correct, so they are not paid for."""
    data = tmp_path / "d.csv"
    data.write_text("id,text\n" + rows)
    out = tmp_path / "d.coded.csv"
    with FlakyServer() as server:
        args = ["code", str(data), "-c", str(BOOK), "-o", str(out), "--base-url", server.url]
        proc = textcoder(*args, "--api-key", "k", "--scoring", "logprobs", "--calibrate", "prior")
        assert proc.returncode == 0, proc.stderr
        assert not server.requests()
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == rows.count("\n") and "sentiment_p_positive" in table
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["requests"] == 0, manifest


def test_a_text_that_is_not_valid_unicode_is_refused_before_sending(tmp_path: Path) -> None:
    """JSON can spell a lone surrogate (`"\\ud800"`), which UTF-8 cannot: sent, it would fail
    on the wire, and written, it would lose the paid-for output. One line names it."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "text": "broken \\ud800 here"}\n')
    with FlakyServer() as server:
        args = ["code", str(data), "-c", str(BOOK), "--base-url", server.url, "--api-key", "k"]
        proc = textcoder(*args, "--scoring", "logprobs", "--id-column", "id")
        assert proc.returncode == 1, proc.stderr
        assert f"{data}: line 2: the text is not valid Unicode" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not server.requests()


def test_bad_options_are_one_clear_line(tmp_path: Path) -> None:
    tweets = str(EXAMPLES / "tweets.csv")
    proc = textcoder("code", tweets, "-c", str(BOOK), "--concurrency", "0")
    assert proc.returncode != 0 and "concurrency must be at least 1" in proc.stderr
    missing = tmp_path / "no" / "such" / "out.csv"
    proc = textcoder("code", tweets, "-c", str(BOOK), "-o", str(missing))
    assert proc.returncode != 0 and f"{missing.parent} does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


JOINT = """
instructions: Code the news headline.
mode: joint
variables:
  - name: topic
    categories: [politics, sport, economy]
  - name: frames
    multi: true
    categories: [conflict, morality, economic]
  - name: tone
    scale: ordinal
    categories: [negative, neutral, positive]
"""


def test_joint_schema_bounds_what_it_can() -> None:
    book = Codebook.from_yaml_text(JOINT)
    frames = joint_schema(book)["properties"]["frames"]  # type: ignore[index]
    assert frames["uniqueItems"] is True and frames["maxItems"] == 3
    longest = '{"topic":"politics","frames":["conflict","morality","economic"],"tone":"negative"}'
    assert longest_answer(book) >= len(longest)
    cut = '{"topic": "sport", "frames": ["morality", "mor'
    assert field_value(cut, "topic") == ("sport", len('{"topic": '))
    assert field_value(cut, "frames") is None


def test_joint_mode_codes_every_variable_on_the_embedded_model(local_backend: object) -> None:
    book = Codebook.from_yaml_text(JOINT)
    texts = ["Parliament votes on the budget", "Local team wins the cup", "Shares fall sharply"]
    with Coder(book, backend=local_backend) as coder:  # type: ignore[arg-type]
        results = coder.code_texts(texts, progress=False)
    for r in results:
        for name in ("topic", "frames", "tone"):
            assert r[name].error is None, r[name].error
        assert r["topic"].label in ("politics", "sport", "economy")
        probs = r["topic"].probs
        assert math.isclose(sum(probs.values()) + r["topic"].other, 1.0, abs_tol=1e-9)
        items = json.loads(r["frames"].raw) if r["frames"].raw.startswith("[") else []
        assert len(items) == len(set(items))
    # probabilities, not only 0/1 votes, where the engine gives logprobs
    assert any(0.0 < p < 1.0 for r in results for p in r["topic"].probs.values())


def test_usage_error_for_exact_on_a_server(tmp_path: Path) -> None:
    with FlakyServer() as server, pytest.raises(UsageError, match="logprobs"):
        Coder(BOOK, base_url=server.url, api_key="sk-test", scoring="exact")


def test_a_text_over_the_context_fails_permanently_or_is_truncated(tmp_path: Path) -> None:
    from textcoder.backends.local import LocalBackend

    backend = LocalBackend(n_ctx=512)
    long = "a very long document " * 400
    with Coder(BOOK, backend=backend, scoring="text") as coder:
        (result,) = coder.code_texts([long], progress=False)
        assert result.error and result["sentiment"].extra.get("permanent") is True
    with Coder(BOOK, backend=backend, scoring="text", truncate=True) as coder:
        (result,) = coder.code_texts([long, "short"], progress=False)[:1]
        assert result.error is None
        assert coder.last_stats is not None and coder.last_stats.truncated == 1
        assert coder.manifest()["truncated_texts"] == 1


def test_an_unknown_model_without_a_key_names_both_readings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    args = ["code", str(EXAMPLES / "tweets.csv"), "-c", str(BOOK), "--model", "nosuchmodel"]
    proc = subprocess.run(
        [sys.executable, "-m", "textcoder", *args, "-o", str(tmp_path / "o.csv")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "not a local model" in proc.stderr and "smollm2" in proc.stderr
    assert "OPENAI_API_KEY" in proc.stderr
