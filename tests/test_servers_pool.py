"""Several servers at once (issue 17): the least busy live server gets each request, a dead
or failing one sits out and comes back, a mix of models is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Coder, UsageError
from textcoder.backends import base_urls
from textcoder.backends.openai import OpenAIBackend
from textcoder.backends.pool import ServerPool

from .conftest import EXAMPLES, textcoder
from .flaky_server import FlakyServer
from .servers import free_port
from .test_runs import texts, write_data

BOOK = EXAMPLES / "sentiment.yaml"


def _third_fails(key: str, attempt: int) -> str:
    return "500" if (hash(key) + attempt) % 3 == 0 else "ok"


def test_rows_spread_over_servers_and_a_dead_one_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    ids = write_data(data, 60)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with FlakyServer(models=["m"]) as good, FlakyServer(plan_fn=_third_fails, models=["m"]) as bad:
        args = ["code", str(data), "-c", str(BOOK), "--id-column", "id", "--scoring", "logprobs"]
        for url in (good.url, bad.url, dead):
            args += ["--base-url", url]
        proc = textcoder(*args, "--concurrency", "2", "--model", "m", "--api-key", "sk-test")
        assert proc.returncode == 0, proc.stderr
        answered = good.answers_by_key() + bad.answers_by_key()
    out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
    assert list(out["id"]) == ids and not any(out["sentiment_error"])
    assert len(answered) == 60 and set(answered.values()) == {1}  # every row once
    assert good.answers_by_key() and bad.requests()
    manifest = json.loads((tmp_path / "d.coded.csv.manifest.json").read_text())
    by_url = {s["base_url"].rstrip("/"): s for s in manifest["servers"]}
    assert by_url[dead]["failures"] >= 1 and by_url[dead]["mean_latency_s"] is None
    assert by_url[bad.url]["failures"] >= 1
    assert f"{dead}/: " in proc.stderr  # the closing summary names each server


def test_a_server_that_comes_back_gets_requests_again() -> None:
    port = free_port()
    clock = [0.0]
    with FlakyServer(delay=0.01) as first:
        backends = [
            OpenAIBackend(model="m", base_url=u, api_key="k", timeout=5, max_retries=0)
            for u in (first.url, f"http://127.0.0.1:{port}/v1")
        ]
        pool = ServerPool(backends, clock=lambda: clock[0])
        with Coder(BOOK, backend=pool, scoring="logprobs", concurrency=2) as coder:
            coder.code_texts(texts(10), progress=False)
            second = pool.servers[1]
            assert second.failures >= 1 and second.requests == second.failures
            with FlakyServer(port=port) as back:
                clock[0] += 1000.0  # past any backoff
                coder.code_texts([f"{t} again" for t in texts(10)], progress=False)
                assert back.answers_by_key(), "the server that came back got no requests"
    assert second.consecutive == 0 and second.down_until == 0.0


def test_a_mix_of_models_is_refused_unless_allowed() -> None:
    with FlakyServer(models=["a"]) as one, FlakyServer(models=["b"]) as two:
        urls = [one.url, two.url]
        with pytest.raises(UsageError, match="different models"):
            Coder(BOOK, base_url=urls, api_key="k", scoring="logprobs")
        with Coder(BOOK, base_url=urls, api_key="k", scoring="logprobs", allow_mixed_models=True):
            pass


def test_base_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://a/v1, http://b/v1")
    assert base_urls(None) == ["http://a/v1", "http://b/v1"]
    assert base_urls(["http://c/v1"]) == ["http://c/v1"]
