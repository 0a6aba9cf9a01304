"""Long runs: retries, resume, exactly-once, signals and chunked tables, against a loopback
server that fails by plan (tests/flaky_server.py) and the embedded model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from textcoder import BackendError, Codebook, Coder, DataError, RequestError, ratelimit
from textcoder import coder as coder_module
from textcoder.ratelimit import RateLimiter, TokenBucket, estimate_tokens
from textcoder.retry import RetryPolicy, is_retryable
from textcoder.runner import Runner
from textcoder.store import COMMIT_EVERY, Store
from textcoder.tables import TableWriter, iter_table

from .conftest import EXAMPLES, ROOT, wait_for
from .flaky_server import FlakyServer

BOOK = EXAMPLES / "sentiment.yaml"


def texts(n: int) -> list[str]:
    return [f"<r{i:03d}> a text to code" for i in range(n)]


def coder(server: FlakyServer, store: Path | None = None, **kw: object) -> Coder:
    opts: dict[str, object] = {
        "concurrency": 4,
        "timeout": 1.0,
        "store": store,
        "scoring": "logprobs",
    }
    opts.update(kw)
    return Coder(
        Codebook.from_yaml(BOOK),
        base_url=server.url,
        api_key="sk-test",
        **opts,  # type: ignore[arg-type]
    )


# retries -------------------------------------------------------------------------------------


def test_every_failure_mode_is_retried_and_every_row_coded_once(tmp_path: Path) -> None:
    plan = {
        "<r001>": ["429", "429"],
        "<r002>": ["500"],
        "<r003>": ["503", "drop"],
        "<r004>": ["slow"],  # slower than the 1 s timeout
    }
    with FlakyServer(plan) as server:
        c = coder(server, tmp_path / "s.sqlite")
        results = c.code_texts(texts(10), progress=False)
        c.close()
        assert [r.error for r in results] == [None] * 10
        answered = server.answers_by_key()
        assert len(answered) == 10 and set(answered.values()) == {1}
        for key, n in (("<r001>", 3), ("<r002>", 2), ("<r003>", 3), ("<r004>", 2)):
            assert len([e for e in server.requests() if key in e.key]) == n, key
    assert c.last_stats is not None and c.last_stats.retries == 6
    with Store(tmp_path / "s.sqlite") as store:
        assert store.counts() == {"ok": 10, "failed": 0}


def test_results_come_back_in_input_order(tmp_path: Path) -> None:
    with FlakyServer(delay=0.02, plan={"<r000>": ["500"]}) as server:
        c = coder(server, concurrency=8)
        results = c.code_texts(texts(24), progress=False)
        c.close()
        assert server.max_in_flight > 1
        # the server answers each text with a label fixed by the text: row i must carry text i's
        for text, res in zip(texts(24), results, strict=True):
            key = f"Text: '''{text}'''"
            assert (
                res.raw
                == server.completion({"messages": [{}]}, key)["choices"][0]["message"]["content"]
            )


def test_a_400_is_not_retried_and_the_next_run_retries_only_failures(tmp_path: Path) -> None:
    plan = {"<r002>": ["400"], "<r005>": ["500", "500", "500"]}
    with FlakyServer(plan) as server:
        c = coder(server, tmp_path / "s.sqlite", max_retries=2)
        first = c.code_texts(texts(8), progress=False)
        c.close()
        assert "400" in (first[2].error or "") and "Invalid 'messages'" in (first[2].error or "")
        assert "gave up after 2 retries" in (first[5].error or "")
        assert [i for i, r in enumerate(first) if r.error] == [2, 5]
        assert len([e for e in server.requests() if "<r002>" in e.key]) == 1
        server.phase = 2
        c = coder(server, tmp_path / "s.sqlite")
        second = c.code_texts(texts(8), progress=False)
        c.close()
        resent = {e.key for e in server.requests(phase=2)}
        assert len(resent) == 2 and all("<r002>" in k or "<r005>" in k for k in resent)
        assert [r.error for r in second] == [None] * 8
        assert [r.label for i, r in enumerate(second) if i not in (2, 5)] == [
            r.label for i, r in enumerate(first) if i not in (2, 5)
        ]


def test_a_broken_answer_fails_its_row_clearly_and_no_other(tmp_path: Path) -> None:
    plan = {"<r001>": ["html"] * 2, "<r003>": ["nochoices"] * 2}
    with FlakyServer(plan) as server:
        c = coder(server, tmp_path / "s.sqlite", max_retries=1)
        results = c.code_texts(texts(5), progress=False)
        c.close()
    assert "not JSON" in (results[1].error or "") and "Gateway says hello" in (
        results[1].error or ""
    )
    assert "no choices" in (results[3].error or "")
    assert [i for i, r in enumerate(results) if r.error] == [1, 3]
    assert all(abs(sum(r.probs.values()) + r.other - 1) < 1e-9 for r in (results[0], results[2]))


# resume ---------------------------------------------------------------------------------------


def test_resume_sends_only_what_the_store_lacks(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    with FlakyServer() as server:
        c = coder(server, store)
        c.code_texts(texts(6), progress=False)
        server.phase = 2
        more = c.code_texts(texts(10), progress=False)
        assert len(server.requests(phase=2)) == 4
        assert c.last_stats is not None and c.last_stats.reused == 6
        server.phase = 3  # --fresh sends everything again
        c.fresh = True
        again = c.code_texts(texts(10), progress=False)
        c.close()
        assert len(server.requests(phase=3)) == 10
        assert [r.probs for r in again] == [r.probs for r in more]
        server.phase = 4  # another model: new keys, old answers kept
        other = Coder(
            Codebook.from_yaml(BOOK),
            "gpt-4.1-mini",
            server.url,
            "logprobs",
            api_key="k",
            store=store,
        )
        other.code_texts(texts(10), progress=False)
        other.close()
        assert len(server.requests(phase=4)) == 10
    with Store(store) as s:
        assert s.counts()["ok"] == 20


def test_resume_on_the_embedded_model(tmp_path: Path, local_backend: object) -> None:
    book = Codebook.from_yaml(BOOK)
    c = Coder(book, backend=local_backend, store=tmp_path / "s.sqlite")  # type: ignore[arg-type]
    first = c.code_texts(["I love it", "", "It broke."], progress=False)
    assert c.last_stats is not None and c.last_stats.requests == 2
    again = c.code_texts(["I love it", "", "It broke."], progress=False)
    assert c.last_stats.requests == 0 and c.last_stats.reused == 2
    assert [r.probs for r in again] == [r.probs for r in first]
    assert abs(sum(again[0].probs.values()) + again[0].other - 1) < 1e-9
    c.close()


def test_rows_are_read_lazily(tmp_path: Path) -> None:
    """The runner pulls rows as it codes them: a huge table is never all in memory."""
    store = Store(tmp_path / "s.sqlite")
    with FlakyServer() as server:
        c = coder(server)
        runner = Runner(c.codebook, c.backend, c.scoring, c.params, 4, store=store)
        lag: list[int] = []

        def rows() -> Iterator[tuple[str, str]]:
            for i, t in enumerate(texts(40)):
                lag.append(i - store.counts()["ok"])
                yield str(i), t

        from textcoder.runner import run_sync

        run_sync(lambda: runner.run_items(rows()))
        c.close()
    assert len(lag) == 40 and max(lag) <= 4 + 1
    assert store.counts()["ok"] == 40


# the command line -------------------------------------------------------------------------


def textcoder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "textcoder", *args], capture_output=True, text=True, cwd=ROOT
    )


def write_data(path: Path, n: int) -> list[str]:
    ids = [f"id{i:03d}" for i in range(n)]
    pd.DataFrame({"id": ids, "text": texts(n), "note": ["x"] * n}).to_csv(path, index=False)
    return ids


def test_cli_failed_rows_exit_nonzero_and_rerun_retries_them(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    ids = write_data(data, 12)
    args = [str(data), "-c", str(BOOK), "--id-column", "id", "--max-retries", "1"]
    with FlakyServer({"<r004>": ["500", "500"], "<r007>": ["400"]}) as server:
        proc = textcoder(
            "code", *args, "--base-url", server.url, "--concurrency", "3", "--scoring", "logprobs"
        )
        assert proc.returncode == 1, proc.stderr
        assert "2 rows failed" in proc.stderr and "run the same command again" in proc.stderr
        out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
        assert list(out["id"]) == ids
        assert [i for i, e in enumerate(out["sentiment_error"]) if e] == [4, 7]
        assert (tmp_path / "d.coded.csv.textcoder.sqlite").exists()
        server.phase = 2
        proc = textcoder("code", *args, "--base-url", server.url, "--scoring", "logprobs")
        assert proc.returncode == 0, proc.stderr
        assert len(server.requests(phase=2)) == 2
        out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
        assert list(out["id"]) == ids and not any(out["sentiment_error"])


def _stored(store: Path) -> set[str]:
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return {r[0] for r in db.execute("SELECT row_id FROM answers WHERE ok = 1")}
        finally:
            db.close()
    except sqlite3.OperationalError:
        return set()  # not created yet


def _start_until(
    args: list[str], until: Callable[[], bool], what: str, err: Path | None = None
) -> subprocess.Popen[str]:
    """Start `textcoder ARGS` and poll until `until()` holds while it runs; the 60 s deadline
    is only a safety net (the stand-in server's state decides, not the clock). `err`: a file
    that takes its stderr, to be read while it runs (else a pipe)."""
    with open(err, "w") if err is not None else contextlib.nullcontext() as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "textcoder", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if f is None else f,
            text=True,
        )
    wait_for(until, what, proc, err)
    return proc


def _start_held(args: list[str], store: Path, server: FlakyServer) -> subprocess.Popen[str]:
    """Start a `textcoder ARGS` run at concurrency 1 that stays live till it is killed: the
    server answers one request and holds the next; it answers every later one as usual."""
    hold = server.hold_after = len(server.requests()) + 1
    proc = _start_until(
        args,
        lambda: len(_stored(store)) >= 1 and len(server.requests()) > hold,
        "one answer stored and the next request held",
    )
    server.hold_after = None  # the held request stays held
    return proc


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_killed_run_completes_on_rerun_with_every_row_once(tmp_path: Path, how: str) -> None:
    """A run stopped where the server decides (it answers the first requests, then holds every
    later one in flight), then run again: every row is coded and nothing stored is asked again.
    A SIGKILL loses at most the requests in flight and one commit group; SIGINT loses none:
    the held requests are released once the run has said it is finishing them, so it ends
    with them (never waiting out its grace on requests taken after the signal)."""
    concurrency = 4
    # past two commit groups: a store that kept none, or stopped after one, loses too many
    answered = 2 * COMMIT_EVERY + 6 * concurrency
    n = answered + 5 * concurrency
    data = tmp_path / "d.csv"
    ids = write_data(data, n)
    store = tmp_path / "d.coded.csv.textcoder.sqlite"
    with FlakyServer(hold_after=answered) as server:
        args = [str(data), "-c", str(BOOK), "--id-column", "id", "--base-url", server.url]
        args += ["--scoring", "logprobs"]
        args += ["--concurrency", str(concurrency)]
        waiting = answered + concurrency  # then every worker waits on a held request
        err_path = tmp_path / "err.txt"
        proc = _start_until(
            ["code", *args], lambda: len(server.requests()) >= waiting, "requests held", err_path
        )
        os.kill(proc.pid, getattr(signal, how))
        if how == "SIGINT":  # handled: no row is taken after it; those in flight are answered
            wait_for(
                lambda: "finishing the requests in flight" in err_path.read_text(),
                "the signal handled",
                proc,
                err_path,
            )
            server.release()
        proc.communicate(timeout=60)  # a safety deadline
        err = err_path.read_text()
        if how == "SIGINT":
            assert proc.returncode == 130, err
            assert "Run the same command again to resume" in err
        else:
            assert proc.returncode == -signal.SIGKILL
        assert not (tmp_path / "d.coded.csv").exists()
        kept = _stored(store)
        assert 0 < len(kept) < n
        db = sqlite3.connect(store)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        first = [e.key for e in server.requests(phase=1)]  # in the order they came
        assert len(first) == waiting  # no row was taken after the signal
        server.hold_after = None
        server.phase = 2
        proc2 = subprocess.run(
            [sys.executable, "-m", "textcoder", "code", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc2.returncode == 0, proc2.stderr
        second = [e.key for e in server.requests(phase=2)]
    out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
    assert list(out["id"]) == ids and not any(out["sentiment_error"])
    assert len(_stored(store)) == n
    key_id = {f"Text: '''{t}'''": i for t, i in zip(texts(n), ids, strict=True)}
    got = {key_id[k] for k in first[:answered] if k in key_id}
    in_flight = {key_id[k] for k in first[answered:waiting] if k in key_id}
    asked_again = [key_id[k] for k in second if k in key_id]
    # the rerun asks each row the store lacks, once, and nothing the store had
    assert sorted(asked_again) == sorted(set(ids) - kept)
    lost = set(asked_again) & (got | in_flight)
    if how == "SIGINT":  # requests in flight were let finish and kept
        assert got | in_flight <= kept and not lost
    else:  # lost: the requests in flight and at most one commit group's answers
        assert kept <= got and in_flight <= lost
        assert len(lost) <= concurrency + COMMIT_EVERY, (len(lost), len(kept))


# tables in chunks -----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["csv", "tsv", "jsonl", "parquet"])
def test_tables_stream_in_chunks(tmp_path: Path, ext: str) -> None:
    df = pd.DataFrame({"id": [f"i{i}" for i in range(25)], "text": [f"t {i}" for i in range(25)]})
    df["p"] = [i / 10 for i in range(25)]
    df.loc[3, "text"] = ""
    path = tmp_path / f"t.{ext}"
    writer = TableWriter(path)
    for start in range(0, 25, 10):
        writer.write(df.iloc[start : start + 10])
    assert not path.exists()  # only the temporary file, until closed
    writer.close()
    chunks = list(iter_table(path, chunksize=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 4]
    assert list(pd.concat(chunks).index) == list(range(25))
    back = pd.concat(chunks)
    assert list(back["id"]) == list(df["id"]) and list(back["text"]) == list(df["text"])
    only = next(iter_table(path, chunksize=5, columns=["text"]))
    assert list(only.columns) == ["text"]


def test_code_file_streams_a_generated_table(tmp_path: Path) -> None:
    data = tmp_path / "big.csv"
    n = 600
    pd.DataFrame({"text": texts(n), "k": range(n)}).to_csv(data, index=False)
    out = tmp_path / "big.coded.jsonl"
    with FlakyServer(validate=False) as server:
        c = coder(server, concurrency=16)
        stats = c.code_file(data, out, progress="off", chunksize=7)
        c.close()
        assert len(server.requests()) == n
    assert stats.rows == n and stats.failed == 0
    coded = pd.read_json(out, lines=True)
    assert list(coded["k"]) == list(range(n)) and coded["sentiment_error"].eq("").all()


def test_chunks_leave_in_input_order_as_soon_as_complete() -> None:
    """Results arriving in any order: each chunk is written once all its rows are in, and
    rows keep their input order; a row's label comes with that row."""
    from textcoder.results import CodeResult, OrderedChunks
    from textcoder.scoring.result import VariableResult

    book = Codebook.from_yaml(BOOK)
    df = pd.DataFrame({"text": [f"t{i}" for i in range(7)]})
    written: list[pd.DataFrame] = []
    stream = OrderedChunks(iter_table_frames(df, 3), book, "logprobs", written.append)

    def result(i: int) -> CodeResult:
        label = ["positive", "negative", "neutral"][i % 3]
        probs = {lab: float(lab == label) for lab in ("positive", "negative", "neutral")}
        return CodeResult({"sentiment": VariableResult(label=label, probs=probs, other=0.0)})

    for i in (4, 1, 2):
        stream.add(i, result(i))
    assert written == []  # row 0 is missing: nothing can go yet
    stream.add(0, result(0))
    assert [list(w["text"]) for w in written] == [["t0", "t1", "t2"]]
    for i in (6, 5, 3):
        stream.add(i, result(i))
    assert [len(w) for w in written] == [3, 3, 1]
    out = pd.concat(written)
    assert list(out["text"]) == list(df["text"])
    assert list(out["sentiment"]) == [result(i)["sentiment"].label for i in range(7)]
    stream.finish()


def iter_table_frames(df: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(df), size):
        yield df.iloc[start : start + size]


# units: retry policy, rate limits -------------------------------------------------------------


def test_what_is_retried() -> None:
    assert is_retryable(BackendError("x", status=429))
    assert is_retryable(BackendError("x", status=503))
    assert is_retryable(BackendError("x", status=408))
    assert is_retryable(BackendError("x", transient=True))
    assert not is_retryable(BackendError("x", status=401))
    assert not is_retryable(RequestError("x", status=400))
    assert not is_retryable(BackendError("llama.cpp failed"))


def test_backoff_grows_and_honours_retry_after() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(0)
    waits = [policy.delay(a, None, rng) for a in range(6)]
    for a, w in enumerate(waits):
        ceiling = min(8.0, 2**a)
        assert ceiling / 2 <= w <= ceiling
    assert 2.5 <= policy.delay(0, 2.5, rng) <= 2.75
    assert policy.delay(0, 10_000, rng) <= policy.max_retry_after + 1


def test_token_bucket_waits_and_is_corrected() -> None:
    now = [0.0]
    bucket = TokenBucket(60, capacity=2, clock=lambda: now[0])  # one a second, burst of two
    assert bucket.wait_for(1) == 0
    bucket.take(1)
    bucket.take(1)
    assert bucket.wait_for(1) == pytest.approx(1.0)
    now[0] = 0.5
    assert bucket.wait_for(1) == pytest.approx(0.5)
    now[0] = 10.0
    assert bucket.level == 0 or bucket.wait_for(1) == 0  # refills up to capacity only
    bucket._refill()
    assert bucket.level == 2
    bucket.give(-5)  # usage said more than estimated: debt
    assert bucket.wait_for(1) == pytest.approx(4.0)
    limiter = RateLimiter(tpm=600, clock=lambda: now[0])
    assert limiter.active and limiter.requests is None
    limiter.correct(100, 40)  # estimated high: tokens come back
    assert limiter.tokens is not None and limiter.tokens.level <= limiter.tokens.capacity
    msgs = [{"role": "system", "content": "x" * 400}, {"role": "user", "content": "hi"}]
    assert estimate_tokens(msgs, 10) >= 100 + 10


def test_rpm_cap_spaces_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with --rpm 120 (2 a second, a burst of 10) at concurrency 8: ten requests go at
    once, the 11th and 12th wait half a second each. The limiter runs on a controlled clock
    that only its own waits move, so the test measures no wall time."""
    now = [0.0]
    granted: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:  # the limiter's wait: move the clock, yield
        now[0] += seconds
        await real_sleep(0)

    class Recording(RateLimiter):
        def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
            super().__init__(rpm, tpm, clock=lambda: now[0])

        async def acquire(self, tokens: int) -> None:
            await super().acquire(tokens)
            granted.append(now[0])

    monkeypatch.setattr(ratelimit, "asyncio", SimpleNamespace(sleep=sleep, Lock=asyncio.Lock))
    monkeypatch.setattr(coder_module, "RateLimiter", Recording)
    with FlakyServer() as server:
        c = coder(server, rpm=120, concurrency=8)
        results = c.code_texts(texts(12), progress=False)
        c.close()
        assert len(server.requests()) == 12
    assert [r.error for r in results] == [None] * 12
    assert granted == pytest.approx([0.0] * 10 + [0.5, 1.0])


def test_a_repeated_id_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    ids = [f"p{i}" for i in range(50)] + ["p7"] + ["p60"]
    pd.DataFrame({"id": ids, "text": [f"t {i}" for i in range(len(ids))]}).to_csv(data, index=False)
    with FlakyServer() as server:
        c = coder(server)
        with pytest.raises(DataError, match=r"column 'id' repeats the id 'p7'"):
            c.code_file(data, tmp_path / "o.csv", id_column="id", progress="off", chunksize=8)
        c.close()
        assert server.requests() == []
    assert not (tmp_path / "o.csv").exists()


def test_requests_go_through_the_proxy_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured, as the openai client honours it: the loopback server stands in
    for the proxy, and the API's host does not even resolve."""
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FlakyServer() as server:
        proxy = server.url.removesuffix("/v1")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("http_proxy", proxy)
        c = Coder(
            Codebook.from_yaml(BOOK),
            base_url="http://api.textcoder.invalid/v1",
            api_key="sk-test",
            scoring="logprobs",
            timeout=5.0,
            max_retries=0,
        )
        results = c.code_texts(texts(3), progress=False)
        c.close()
        assert [r.error for r in results] == [None] * 3
        assert len(server.requests()) == 3
