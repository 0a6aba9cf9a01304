"""The `openai` backend coding end to end against a real `textcoder serve` on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook, Coder

from .flaky_server import FlakyServer
from .servers import ROOT, free_port

TEXTS = [
    "I loved the new Batman movie!",
    "Worst customer service ever, waited two hours and nobody called back.",
    "The train leaves at nine.",
]


def test_coder_over_the_wire_gives_probabilities(serve_url: str, sentiment_book: Codebook) -> None:
    coder = Coder(sentiment_book, model="smollm2", base_url=serve_url, api_key="none")
    # exact scoring over HTTP is opt-in: a default run never asks the optional routes
    assert coder.backend.name == "openai" and not coder.capabilities.continuations
    assert coder.scoring == "logprobs"
    results = coder.code_texts(TEXTS, progress=False)
    labels = set(sentiment_book.variables[0].labels)
    for r in results:
        assert r.error is None
        assert r.label in labels | {""} or r.label is None
        assert set(r.probs) <= labels
        assert abs(sum(r.probs.values()) + r.other - 1.0) < 1e-6
        assert all(0.0 <= p <= 1.0 for p in r.probs.values())
    again = coder.code_texts(TEXTS[:1], progress=False)[0]  # greedy: the same answer again
    assert again.probs == pytest.approx(results[0].probs, abs=1e-9)


def test_cli_code_with_base_url(serve_url: str, tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": TEXTS}).to_csv(data, index=False)
    out = tmp_path / "coded.csv"
    cmd = [
        sys.executable,
        "-m",
        "textcoder",
        "code",
        str(data),
        "-c",
        str(ROOT / "examples/sentiment.yaml"),
    ]
    run = subprocess.run(
        [
            *cmd,
            "--base-url",
            serve_url,
            "--model",
            "gpt-4o",
            "--api-key",
            "none",
            "-o",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    df = pd.read_csv(out, keep_default_na=False)
    cols = [c for c in df.columns if c.startswith("sentiment_p_")] + ["sentiment_outside"]
    probs = df[cols].sum(axis=1)
    assert len(df) == 3 and ((probs - 1.0).abs() < 1e-6).all()
    assert (df["sentiment_error"] == "").all()


def test_a_server_that_is_down_fails_each_row_clearly(
    sentiment_book: Codebook, tmp_path: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/v1"
    coder = Coder(
        sentiment_book, model="smollm2", base_url=down, api_key="none", scoring="logprobs",
        max_retries=0, timeout=5,
    )  # fmt: skip
    results = coder.code_texts(TEXTS, progress=False)
    assert len(results) == 3
    for r in results:
        assert r.error and "cannot reach" in r.error and "Traceback" not in r.error
    data = tmp_path / "t.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    run = subprocess.run(
        [sys.executable, "-m", "textcoder", "code", str(data), "-c", str(ROOT / "examples/sentiment.yaml"),
         "--base-url", down, "--model", "smollm2", "--api-key", "none", "--scoring", "logprobs",
         "--max-retries", "0", "-o", str(tmp_path / "o.csv"), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    df = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    assert len(df) == 3 and all("cannot reach" in e for e in df["sentiment_error"])


def test_what_orjson_refuses_is_sent_and_read_as_json_does(sentiment_book: Codebook) -> None:
    """A lone surrogate (a JSONL file's `"\\ud800"`, through the API), integer keys (a YAML
    codebook's `logit_bias`), NaN in an answer: sent and read as Python's json would; the
    odd row fails alone (this stand-in drops the connection) and never stops the run."""
    from textcoder._json import from_json, to_json

    body = {"messages": [{"role": "user", "content": "odd \ud800 text"}], "logit_bias": {1234: -1}}
    assert from_json(to_json(body)) == {
        "messages": [{"role": "user", "content": "odd \ud800 text"}],
        "logit_bias": {"1234": -1},
    }
    assert from_json(to_json({"bias": {1: 2}})) == {"bias": {"1": 2}}
    answer = from_json(b'{"logprob": NaN, "top": -Infinity}')
    assert answer["logprob"] != answer["logprob"] and answer["top"] == float("-inf")
    with pytest.raises(ValueError):
        from_json(b"<html>502 Bad Gateway</html>")
    with FlakyServer() as server:
        c = Coder(
            sentiment_book, base_url=server.url, api_key="k", scoring="logprobs", max_retries=0
        )
        odd, fine = c.code_texts(["odd \ud800 text", "a fine text"], progress=False)
        c.close()
    assert odd.error is None or "cannot reach" in odd.error, odd.error
    assert fine.error is None and abs(sum(fine.probs.values()) + fine.other - 1) < 1e-9
