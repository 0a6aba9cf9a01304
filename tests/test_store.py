"""The answer store: SQLite in WAL mode, one row per (request hash, row id), committed in groups."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest

from textcoder import Codebook, Coder, DataError, VariableResult
from textcoder.asyncsync import run_sync
from textcoder.progress import Progress
from textcoder.runner import Runner, RunStats
from textcoder.store import COMMIT_EVERY, Store, request_hash

from .conftest import EXAMPLES
from .flaky_server import FlakyServer


def result(label: str = "positive", error: str | None = None) -> VariableResult:
    if error:
        nan = float("nan")
        return VariableResult(
            label="", probs={"positive": nan, "negative": nan}, other=nan, error=error
        )
    return VariableResult(
        label=label,
        probs={"positive": 0.7, "negative": 0.2},
        other=0.1,
        raw="Positive",
        extra={"fallback": True},
    )


def test_answers_survive_reopening_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        store.put("h1", "1", "sentiment", result(), ok=True, model="m", prompt_tokens=12)
        store.put("h1", "2", "sentiment", result(error="the server answered 500"), ok=False)
    with Store(path) as store:
        got = store.get("h1", "1")
        assert got is not None and got.ok and got.model == "m" and got.prompt_tokens == 12
        assert got.result == result()
        failed = store.get("h1", "2")
        assert failed is not None and not failed.ok and failed.result.error
        assert math.isnan(failed.result.probs["positive"]) and math.isnan(failed.result.other)
        assert store.has_ok("h1", "1") and not store.has_ok("h1", "2")
        assert store.get("h2", "1") is None
        assert store.counts() == {"ok": 1, "failed": 1}
        store.put("h1", "2", "sentiment", result("negative"), ok=True)  # a retry replaces it
        assert store.counts() == {"ok": 2, "failed": 0}


def test_wal_mode_and_an_answer_outside_a_run_committed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path)
    store.put("h", "1", "v", result(), ok=True)
    other = sqlite3.connect(path)  # another process's view, while the store is still open
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert other.execute("SELECT count(*) FROM answers").fetchone() == (1,)
    other.close()
    store.close()


def test_answers_wait_for_their_group_and_this_stores_reads_see_them(tmp_path: Path) -> None:
    """In a run, answers are written a group at a time; until then the store's own reads
    find them in memory, and another process sees them once their group is written."""
    path = tmp_path / "s.sqlite"

    async def run() -> None:
        store = Store(path)
        other = sqlite3.connect(path)  # another process's view

        def written() -> int:
            return int(other.execute("SELECT count(*) FROM answers").fetchone()[0])

        assert store.is_empty()
        store.put("h", "0", "v", result(), ok=True, model="m")
        assert written() == 0 and not store.is_empty()
        got = store.get("h", "0")
        assert got is not None and got.ok and got.model == "m" and got.result == result()
        assert store.has_ok("h", "0") and store.get("h", "1") is None
        store.put("h", "0", "v", result(error="the server answered 500"), ok=False)
        assert not store.has_ok("h", "0")  # a later answer replaces the waiting one
        for i in range(1, COMMIT_EVERY):
            store.put("h", str(i), "v", result(), ok=True)
        assert written() == COMMIT_EVERY  # the group is full: written at once
        store.put("h", "last", "v", result(), ok=True)
        assert written() == COMMIT_EVERY
        assert set(store.get_many([("h", "0"), ("h", "last"), ("h", "none")])) == {
            ("h", "0"),
            ("h", "last"),
        }
        assert store.counts() == {"ok": COMMIT_EVERY, "failed": 1}
        assert written() == COMMIT_EVERY + 1  # counting commits what waits first
        other.close()
        store.close()

    asyncio.run(run())


def test_a_run_on_an_empty_store_looks_nothing_up(tmp_path: Path) -> None:
    """Row ids are unique within a run, so a store empty at its start has nothing to reuse;
    a run on a store with answers looks each row up and reuses what it finds."""
    book = Codebook.from_yaml(EXAMPLES / "sentiment.yaml")
    texts = [f"<r{i}> a text to code" for i in range(10)]
    store = Store(tmp_path / "s.sqlite")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)

    def lookups() -> int:
        return sum(s.startswith("SELECT ok, result") for s in statements)

    with FlakyServer() as server:
        c = Coder(book, base_url=server.url, api_key="k", scoring="logprobs", concurrency=4)
        for n, looked_up in ((6, 0), (10, 10)):
            runner = Runner(c.codebook, c.backend, c.scoring, c.params, 4, store=store)
            statements.clear()
            rows = [(str(i), t) for i, t in enumerate(texts[:n])]
            run_sync(lambda r=runner, rows=rows: r.run_items(rows))  # type: ignore[misc]
            assert lookups() == looked_up, statements[:5]
        c.close()
        assert runner.stats.reused == 6 and len(server.requests()) == 10
    assert store.counts() == {"ok": 10, "failed": 0}


def test_many_keys_are_read_in_batches() -> None:
    store = Store()
    keys = [(f"h{i % 3}", str(i)) for i in range(1000)]
    for k, rid in keys[::2]:
        store.put(k, rid, "v", result(), ok=True)
    found = store.get_many(keys)
    assert set(found) == set(keys[::2])


def test_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(DataError, match=r"notes\.sqlite"):
        Store(bad)


def test_request_hash_is_stable_and_sensitive() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "parameters": {"t": 0}}
    b = {"parameters": {"t": 0}, "messages": [{"role": "user", "content": "x"}], "model": "m"}
    assert request_hash(a) == request_hash(b) and len(request_hash(a)) == 64
    assert request_hash(a) != request_hash({**a, "model": "n"})


def test_progress_line_counts() -> None:
    stats = RunStats(rows=50, failed=2, prompt_tokens=1000, completion_tokens=50)
    prog = Progress(200, stats, mode="off")
    line = prog.line(prog.started + 10.0)
    assert "50/200 rows (25%)" in line and "5.0 rows/s" in line and "ETA 30s" in line
    assert "1,050 tokens" in line and "2 failed" in line
    assert "rows/s" in Progress(None, stats, mode="off").line()


@pytest.mark.parametrize("template", ["Text: '''{text}'''", "{text}", "A {text} and again {text}."])
def test_store_key_is_the_whole_payloads_hash(template: str) -> None:
    """The runner hashes the JSON around the text once; each key still equals the hash of the
    whole request payload, whatever the text holds."""
    from textcoder import Codebook
    from textcoder.backends.base import CompletionParams
    from textcoder.backends.openai import OpenAIBackend
    from textcoder.runner import Runner

    book = Codebook.from_dict(
        {"instructions": 'Say "yes" or no.\n', "categories": ["yes", "no"], "template": template}
    )
    backend = OpenAIBackend(base_url="http://127.0.0.1:9/v1", api_key="sk-test")
    runner = Runner(book, backend, "logprobs", CompletionParams())
    var = book.variables[0]
    texts = ["plain", 'quote " and \\ backslash', "line\nbreak\ttab", "émoji 🙂 \u2028", "{text}"]
    texts.append("textcoder-key-placeholder-6b1f0d")
    keys = set()
    for text in texts:
        key = runner.request_key(text, var)
        assert key == request_hash(runner.request_payload(text, var))
        keys.add(key)
    assert len(keys) == len(texts)


def test_keys_of_a_store_written_by_textcoder_0_1_still_match() -> None:
    """Digests computed by the runner before the plan existed (commit 7e1f0cf), for a
    one-variable codebook scored by logprobs: an old store's answers are reused."""
    from textcoder.backends.base import Backend
    from textcoder.plan import Planner
    from textcoder.scoring import RequestContext, Settings, get_scorer

    scorer = get_scorer("logprobs")
    book = Codebook.from_yaml(EXAMPLES / "sentiment.yaml")
    caps = Backend.capabilities(None)  # type: ignore[arg-type]
    planner = Planner(
        book,
        scorer,
        scorer.params(Settings(max_tokens=10, seed=0)),
        RequestContext(caps, book.template.split("{text}", 1)[0]),
        engine=("openai", "gpt-4o-mini"),
    )
    var = book.variables[0]
    assert planner.variable_unit("I loved it!", var).keys == (
        "7421b14d23a605ea2fa0080bb44229a6833f93c7532cb24fa339f116b3bd2b7c",
    )
    assert planner.variable_unit('He said "no" \\ ünï', var).keys == (
        "85b295fca5e2e64022dca60fc4dcdec0eebd4d13c32139867690dd0aac045f55",
    )
