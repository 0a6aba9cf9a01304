"""`textcoder estimate`: token counts and prices, with nothing sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook, DataError
from textcoder.estimate import PRICES, estimate, price_for

from .conftest import EXAMPLES, ROOT


def data(tmp_path: Path) -> Path:
    path = tmp_path / "d.csv"
    texts = ["I love it", "", "The bus was late again and I missed my class."]
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    return path


def test_local_model_counts_with_its_own_tokenizer(
    tmp_path: Path, sentiment_book: Codebook, local_backend: object
) -> None:
    report = estimate(data(tmp_path), sentiment_book, local_backend=local_backend)
    assert (report.rows, report.empty, report.requests) == (3, 1, 2)
    assert report.exact and report.local and report.prompt_cost is None
    # the longer text costs more tokens than the shorter one, on top of the shared prompt
    short = estimate(data(tmp_path), sentiment_book, local_backend=local_backend)
    assert short.prompt_tokens == report.prompt_tokens  # deterministic
    assert report.prompt_tokens > 2 * 50
    assert any("nothing to pay" in line for line in report.lines())


def test_openai_model_is_priced(tmp_path: Path, sentiment_book: Codebook) -> None:
    report = estimate(data(tmp_path), sentiment_book, "gpt-4o-mini-2024-07-18", max_tokens=5)
    assert report.requests == 2 and report.max_answer_tokens == 10
    assert report.price == ("gpt-4o-mini", PRICES["gpt-4o-mini"])
    assert report.prompt_cost == pytest.approx(report.prompt_tokens * 0.15 / 1e6)
    assert report.max_answer_cost == pytest.approx(10 * 0.60 / 1e6)
    assert any("prices of" in line for line in report.lines())


def test_openai_models_count_with_tiktoken_offline(
    tmp_path: Path, sentiment_book: Codebook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tiktoken's encodings come from the installed package: exact counts with no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # a cold cache
    report = estimate(data(tmp_path), sentiment_book, "gpt-4o-mini")
    assert report.exact and report.tokenizer == "o200k_base"
    assert estimate(data(tmp_path), sentiment_book, "gpt-4").tokenizer == "cl100k_base"
    from textcoder.estimate import _tiktoken_counter

    count, _, exact = _tiktoken_counter("gpt-4o")
    assert exact and count("hello world") == 2


def test_price_lookup() -> None:
    assert price_for("gpt-4.1-mini")[0] == "gpt-4.1-mini"  # type: ignore[index]
    assert price_for("gpt-4.1-2025-04-14")[0] == "gpt-4.1"  # type: ignore[index]
    assert price_for("llama-3-70b") is None


def test_unknown_column(tmp_path: Path, sentiment_book: Codebook) -> None:
    with pytest.raises(DataError, match="no column 'body'"):
        estimate(data(tmp_path), sentiment_book, "gpt-4o", text_column="body")


def test_cli_prints_json_and_sends_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "textcoder",
            "estimate",
            str(data(tmp_path)),
            "-c",
            str(EXAMPLES / "sentiment.yaml"),
            "-m",
            "gpt-4o",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},  # nothing could answer
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["requests"] == 2 and figures["prompt_tokens"] > 0
    assert figures["prompt_cost_usd"] > 0
