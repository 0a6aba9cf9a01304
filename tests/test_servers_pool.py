"""Several servers at once (issue 17): the least busy live server gets each request, a dead
or failing one sits out and comes back, a mix of models is refused."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Coder, UsageError
from textcoder.backends import base_urls
from textcoder.backends.base import Completion, CompletionParams, Message
from textcoder.backends.openai import OpenAIBackend
from textcoder.backends.pool import EJECT_AFTER, EJECT_BASE, PROBE_EVERY, ServerPool

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


def _run_scenario(pool: ServerPool, scenario: Callable[[], Awaitable[None]]) -> None:
    """Start the pool, run `scenario` on the same event loop, then close the pool."""

    async def run() -> None:
        await pool.start()
        try:
            await scenario()
        finally:
            await pool.aclose()

    asyncio.run(run())


def _backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(model="m", base_url=url, api_key="k", timeout=5, max_retries=0)


def test_an_ejected_server_is_probed_once_a_second_and_back_after_one_answer() -> None:
    """The pool's recovery on a clock the test moves by hand, against real loopback servers:
    five failures in a row eject a server for a time that doubles; while ejected it gets one
    probe a second; an answered probe brings it back at once; its own Retry-After is its
    cool-down; and no request fails while the other server answers."""
    assert (EJECT_AFTER, EJECT_BASE, PROBE_EVERY) == (5, 1.0, 1.0)  # the times below
    now = [0.0]
    sent = itertools.count()
    with (
        FlakyServer(models=["m"]) as steady,
        FlakyServer(default="503", retry_after=None, models=["m"]) as flaky,
    ):
        pool = ServerPool([_backend(flaky.url), _backend(steady.url)], clock=lambda: now[0])
        down = pool.servers[0]

        async def ask(count: int, at: float) -> int:
            """`count` requests at once at time `at`, each answered; how many reached `flaky`."""
            now[0] = at
            before = len(flaky.requests())
            messages: list[list[Message]] = [
                [{"role": "user", "content": f"text {next(sent)}"}] for _ in range(count)
            ]
            params = CompletionParams()
            answers = await asyncio.gather(*(pool.complete(m, params) for m in messages))
            assert all(a.text for a in answers)
            return len(flaky.requests()) - before

        async def scenario() -> None:
            for at in (0.0, 1.0):  # one at a time, each tried on `flaky` first, then `steady`
                for _ in range(EJECT_AFTER):
                    assert await ask(1, at) == 1
            # ejected at 0 for 1 s, back in the rotation at 1 and ejected again, for 2 s
            assert (down.ejected_total, down.down_until) == (2, 3.0)
            assert await ask(8, 1.5) == 0  # ejected: neither asked nor probed
            assert await ask(8, 2.0) == 1  # a second on: one probe, which fails: 4 s more
            assert (down.ejected_total, down.down_until) == (3, 6.0)
            assert await ask(8, 2.5) == 0
            assert await ask(8, 3.0) == 1  # a second on, though ejected till 6
            flaky.default = "ok"
            assert await ask(8, 3.5) == 0
            assert await ask(8, 4.0) == 1  # the probe is answered: back at once
            assert down.down_until == 0.0
            assert await ask(8, 4.0) == 4  # its share again (the less busy of two)
            flaky.default, flaky.retry_after = "503", 4.0
            assert await ask(1, 4.0) == 1  # one failure, with Retry-After: 4
            assert (down.ejected_total, down.down_until) == (4, 8.0)
            assert await ask(8, 7.0) == 0  # no probe during the server's own cool-down
            flaky.default = "ok"
            assert await ask(8, 8.0) == 4

        _run_scenario(pool, scenario)
        asked = next(sent)
        answered = steady.answers_by_key() + flaky.answers_by_key()
    assert len(answered) == asked and set(answered.values()) == {1}  # each answered once
    assert len(flaky.answers_by_key()) == 1 + 4 + 4


def test_a_request_waiting_for_a_slot_goes_back_to_a_server_that_answers_again() -> None:
    """A request that failed on one server, while the other is at its concurrency, is sent
    back to the first (once) as soon as that server has answered another request: it does
    not sit waiting for the busy server's slot while the recovered one is idle."""
    with (
        FlakyServer(models=["m"], hold_after=0) as busy,
        FlakyServer(default="503", retry_after=None, models=["m"]) as back,
    ):
        urls = (busy.url, back.url)
        pool = ServerPool(
            [OpenAIBackend(model="m", base_url=u, api_key="k", timeout=120) for u in urls]
        )
        pool.set_concurrency(1)
        params = CompletionParams()

        def ask(text: str) -> asyncio.Task[Completion]:
            return asyncio.create_task(pool.complete([{"role": "user", "content": text}], params))

        async def until(condition: Callable[[], bool], what: str) -> None:
            end = asyncio.get_running_loop().time() + 60  # a safety deadline only
            while not condition():
                assert asyncio.get_running_loop().time() < end, what
                await asyncio.sleep(0.01)

        async def scenario() -> None:
            held = ask("held")  # the busy server takes it and holds it
            await until(lambda: len(busy.requests()) == 1, "the busy server got a request")
            waiting = ask("waiting")  # the other server answers 503; the busy one is full
            await until(lambda: len(back.requests()) == 1, "the failing server got a request")
            back.default = "ok"  # it recovers, and answers the next request
            assert (await ask("other")).text
            got = await asyncio.wait_for(waiting, 60)  # a safety deadline only
            assert got.text and not held.done()  # answered while the busy server still holds
            busy.release()
            assert (await held).text

        _run_scenario(pool, scenario)
        keys = [e.key for e in back.requests()]
    assert sorted(keys) == ["other", "waiting", "waiting"], keys
    assert [e.key for e in busy.requests()] == ["held"]
