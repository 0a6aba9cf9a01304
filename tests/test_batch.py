"""`textcoder code --batch` against a loopback stand-in for OpenAI's Files and Batches API
(tests/batch_server.py): re-attaching after SIGKILL, nothing paid twice, errors and expired
requests sent again alone, splitting within lowered limits, every kind of codebook."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook, Coder
from textcoder.batch_coder import code_file_batch
from textcoder.batch_store import BatchStore
from textcoder.estimate import estimate
from textcoder.run.batch import BatchExecutor, PlannedRequest, PollPolicy

from .batch_server import BatchServer
from .conftest import EXAMPLES, ROOT, textcoder, wait_for

BOOK = EXAMPLES / "sentiment.yaml"


@pytest.fixture(autouse=True)
def _no_poll_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls follow each other at once: the stand-in moves a batch one state per poll."""
    monkeypatch.setenv("TEXTCODER_BATCH_POLL", "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def table(path: Path, n: int, start: int = 0) -> Path:
    ids = list(range(start + 1, start + n + 1))
    pd.DataFrame({"id": ids, "text": [f"<r{i:03d}> a text to code" for i in ids]}).to_csv(
        path, index=False
    )
    return path


def code_args(server: BatchServer, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "code", str(data), "-c", str(BOOK), "-m", "gpt-4o-mini", "--base-url", server.url,
        "--api-key", "sk-test", "--scoring", "logprobs", "--id-column", "id", "-o", str(out),
        "--quiet", *extra,
    ]  # fmt: skip


def read(out: Path) -> pd.DataFrame:
    return pd.read_csv(out, keep_default_na=False)


def test_sigkill_while_in_progress_then_rerun_reattaches_and_pays_once(tmp_path: Path) -> None:
    data, out = table(tmp_path / "in.csv", 12), tmp_path / "out.csv"
    with BatchServer() as server:
        server.hold.set()
        cmd = [sys.executable, "-m", "textcoder", *code_args(server, data, out, "--batch")]
        for sig, polls in ((signal.SIGINT, 2), (signal.SIGKILL, 4)):
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                wait_for(lambda n=polls: sum(server.polled_in_progress.values()) >= n, "polls")
            finally:
                proc.send_signal(sig)
                _, err = proc.communicate(timeout=120)
            if sig == signal.SIGINT:  # Ctrl-C: stops waiting, says how to collect
                assert proc.returncode == 130 and "Run the same command again" in err, err
        assert len(server.batches) == 1
        (batch_id,) = server.batches
        store = BatchStore(tmp_path / "out.csv.textcoder.sqlite")
        rec = store.batch(batch_id)
        assert rec is not None and rec.status == "in_progress" and not rec.collected
        assert len({row for _, row, _ in store.keys_of(batch_id)}) == 12
        store.close()
        server.hold.clear()
        again = textcoder(*code_args(server, data, out, "--batch"))
        assert again.returncode == 0, again.stderr
        assert len(server.batches) == 1  # re-attached, nothing new created
        assert len(server.paid) == 12 and set(server.paid.values()) == {1}
        assert not server.online
    coded = read(out)
    assert coded["id"].tolist() == list(range(1, 13))
    assert (coded["sentiment_error"] == "").all() and (coded["sentiment"] != "").all()
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text())
    assert manifest["batch"]["attached"] == [batch_id] and manifest["batch"]["created"] == []
    assert batch_id in [b["batch_id"] for b in manifest["batch"]["batches"]]
    assert manifest["batch"]["file_ids"]


@pytest.mark.parametrize("second", ["--batch", "--no-batch"])
def test_error_and_expired_rows_stay_uncoded_and_only_they_are_sent_again(
    tmp_path: Path, second: str
) -> None:
    data, out = table(tmp_path / "in.csv", 8), tmp_path / "out.csv"
    with BatchServer(plan={"<r003>": ["error"], "<r005>": ["expire"]}) as server:
        first = textcoder(*code_args(server, data, out, "--batch"))
        assert first.returncode == 1, first.stderr
        coded = read(out)
        errors = dict(zip(coded["id"], coded["sentiment_error"], strict=True))
        assert "status 400: Invalid 'messages'" in errors[3]
        assert "batch_expired" in errors[5]
        assert [i for i, e in errors.items() if e] == [3, 5]
        (b1,) = server.batches
        assert server.batches[b1].status == "expired"
        again = textcoder(*code_args(server, data, out, second))
        assert again.returncode == 0, again.stderr
        if second == "--batch":
            assert len(server.batches) == 2
            b2 = next(b for b in server.batches if b != b1)
            assert len(server.batches[b2].lines) == 2
            assert not server.online
        else:
            assert len(server.batches) == 1
            assert len(server.online) == 2 and all(
                "<r003>" in k or "<r005>" in k for k in server.online
            )
        assert len(server.paid) + len(server.online) == 8
        assert set(server.paid.values()) <= {1} and set(server.online.values()) <= {1}
    assert (read(out)["sentiment_error"] == "").all()


def test_a_store_half_answered_online_sends_only_the_other_half(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    out = tmp_path / "out.csv"
    with BatchServer() as server:
        half = textcoder(
            *code_args(server, table(tmp_path / "half.csv", 5), tmp_path / "h.csv"),
            "--store",
            str(store),
        )
        assert half.returncode == 0, half.stderr
        assert len(server.online) == 5
        full = textcoder(
            *code_args(server, table(tmp_path / "in.csv", 10), out, "--batch"),
            "--store",
            str(store),
        )
        assert full.returncode == 0, full.stderr
        (batch,) = server.batches.values()
        sent = [line["body"]["messages"][-1]["content"] for line in batch.lines]
        assert len(sent) == 5 and all(any(f"<r{i:03d}>" in s for i in range(6, 11)) for s in sent)
        assert len(server.online) == 5 and set(server.paid.values()) == {1}
    assert (read(out)["sentiment_error"] == "").all()
    assert read(out)["sentiment"].tolist()[:5] == read(tmp_path / "h.csv")["sentiment"].tolist()


def test_lowered_limits_split_25_requests_into_three_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEXTCODER_BATCH_MAX_REQUESTS", "10")
    data, out = table(tmp_path / "in.csv", 25), tmp_path / "out.csv"
    with BatchServer() as server:
        run = textcoder(*code_args(server, data, out, "--batch"))
        assert run.returncode == 0, run.stderr
        sizes = sorted(len(b.lines) for b in server.batches.values())
        assert sizes == [5, 10, 10]
        assert all(b.status == "completed" for b in server.batches.values())
        assert len(server.paid) == 25 and set(server.paid.values()) == {1}
        inputs = {b.input_file_id for b in server.batches.values()}
    manifest = json.loads((tmp_path / "out.csv.manifest.json").read_text())["batch"]
    assert len(manifest["created"]) == 3 and inputs <= set(manifest["file_ids"])
    assert all(b["collected"] for b in manifest["batches"])
    assert (read(out)["sentiment_error"] == "").all() and len(read(out)) == 25


def test_a_byte_limit_splits_files_too(tmp_path: Path) -> None:
    with BatchServer() as server:
        bodies = [
            {
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"<r{i}> " + "x" * 50}],
            }
            for i in range(6)
        ]
        one = len(json.dumps({"custom_id": "tc-" + "0" * 40, "method": "POST",
                              "url": "/v1/chat/completions", "body": bodies[0]}))  # fmt: skip
        report, _ = _submit(server, tmp_path, bodies, max_bytes=2 * one + 10)
        assert sorted(len(b.lines) for b in server.batches.values()) == [2, 2, 2]
        assert report.sent == 6 and len(report.created) == 3


def _submit(
    server: BatchServer, tmp_path: Path, bodies: list[dict[str, object]], max_bytes: int
) -> tuple[object, BatchStore]:
    import openai

    from textcoder.run.batch import BatchLimits
    from textcoder.runner import run_sync
    from textcoder.store import Store

    store = BatchStore(Store(tmp_path / "s.sqlite").db)
    planned = [PlannedRequest(str(i), f"key{i}", b) for i, b in enumerate(bodies)]

    async def go() -> object:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test")
        ex = BatchExecutor(client, store, limits=BatchLimits(max_bytes=max_bytes))
        return await ex.submit(planned)

    return run_sync(go), store


def test_polls_back_off_on_a_controlled_clock(tmp_path: Path) -> None:
    import openai

    from textcoder.runner import run_sync
    from textcoder.store import Store

    waits: list[float] = []
    with BatchServer() as server:
        server.hold.set()

        async def fake_sleep(seconds: float) -> None:  # the clock: no real time passes
            waits.append(seconds)
            if len(waits) == 6:
                server.hold.clear()

        store = BatchStore(Store(tmp_path / "s.sqlite").db)
        policy = PollPolicy(first=2.0, factor=1.5, cap=8.0, sleep=fake_sleep)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "<r1> hi"}]}

        async def go() -> list[object]:
            client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test")
            ex = BatchExecutor(client, store, poll=policy)
            await ex.submit([PlannedRequest("1", "k", body)])
            return list(await ex.wait())

        (rec,) = run_sync(go)
    assert waits == [2.0, 3.0, 4.5, 6.75, 8.0, 8.0, 8.0]
    assert rec.status == "completed" and rec.collected  # type: ignore[attr-defined]
    answer = store.answer(PlannedRequest("1", "k", body).custom_id)
    assert answer is not None and answer.ok


def test_no_wait_then_batches_lists_cancels_and_online_runs_are_refused(tmp_path: Path) -> None:
    data, out = table(tmp_path / "in.csv", 4), tmp_path / "out.csv"
    store = tmp_path / "out.csv.textcoder.sqlite"
    with BatchServer() as server:
        server.hold.set()
        sub = textcoder(*code_args(server, data, out, "--batch", "--no-wait"))
        assert sub.returncode == 0, sub.stderr
        (batch_id,) = server.batches
        assert batch_id in sub.stderr and "Run the same command again" in sub.stderr
        assert not out.exists()
        listed = textcoder("batches", "--store", str(store))
        assert listed.returncode == 0, listed.stderr
        line = next(x for x in listed.stdout.splitlines() if x.startswith(batch_id))
        assert "in_progress" in line and " 4 " in f" {line} "
        online = textcoder(*code_args(server, data, out))
        assert online.returncode == 1 and "not yet collected" in online.stderr
        assert not server.online
        cancel = textcoder("batches", "--store", str(store), "--cancel", "--json")
        assert cancel.returncode == 0, cancel.stderr
        assert json.loads(cancel.stdout)[0]["status"] in ("cancelling", "cancelled")
        collect = textcoder(*code_args(server, data, out, "--batch"))
        assert collect.returncode == 1  # cancelled before anything ran: rows keep the error
        assert (read(out)["sentiment_error"].str.contains("cancelled")).all()
        assert len(server.batches) == 1 and not server.paid


HEADLINE_LABELS = (
    "politics", "economy", "sports", "science", "culture", "very negative", "negative",
    "neutral", "positive", "very positive", "yes", "no",
)  # fmt: skip


@pytest.mark.parametrize("scoring", ["logprobs", "sample"])
def test_multi_variable_multi_label_and_sample_code_as_online(tmp_path: Path, scoring: str) -> None:
    book = Codebook.from_yaml(EXAMPLES / "headlines.yaml")
    data = EXAMPLES / "headlines.csv"
    with BatchServer(labels=HEADLINE_LABELS) as server:
        kw: dict[str, object] = {
            "model": "gpt-4o-mini",
            "base_url": server.url,
            "api_key": "sk-test",
            "scoring": scoring,
            "n": 3,
        }
        online = Coder(book, **kw)  # type: ignore[arg-type]
        online.code_file(data, tmp_path / "online.csv", id_column="id", progress="off")
        online.close()
        asked = sum(server.online.values())
        batch = Coder(book, batch=True, **kw)  # type: ignore[arg-type]
        outcome = code_file_batch(
            batch, data, tmp_path / "batch.csv", id_column="id", progress="off"
        )
        batch.close()
        lines = [line for b in server.batches.values() for line in b.lines]
    # every request of every row's plan went in the batch: 2 variables + 4 frames a row
    rows = len(pd.read_csv(data))
    assert len(lines) == rows * (2 + 4) == outcome.report.sent
    assert asked >= rows * 6  # online asked the same (plus a capability probe for sample)
    if scoring == "sample":
        assert all(line["body"]["n"] == 3 for line in lines)
    pd.testing.assert_frame_equal(read(tmp_path / "online.csv"), read(tmp_path / "batch.csv"))


def test_estimate_prices_at_the_batch_rate() -> None:
    full = estimate(EXAMPLES / "tweets.csv", Codebook.from_yaml(BOOK), "gpt-4o-mini")
    half = estimate(EXAMPLES / "tweets.csv", Codebook.from_yaml(BOOK), "gpt-4o-mini", batch=True)
    assert half.prompt_tokens == full.prompt_tokens
    assert half.prompt_cost == pytest.approx(full.prompt_tokens * 0.075 / 1e6)
    assert half.max_answer_cost == pytest.approx(full.max_answer_cost / 2)  # type: ignore[operator]
    assert any("Batch API prices" in line for line in half.lines())


def test_a_batch_created_but_not_recorded_is_found_again_not_made_twice(tmp_path: Path) -> None:
    """A run killed between creating a batch and recording it: its file is in the store, so
    the next run finds the batch by its input file instead of creating another."""
    import openai

    from textcoder.runner import run_sync
    from textcoder.store import Store

    store = BatchStore(Store(tmp_path / "s.sqlite").db)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "<r1> hi"}]}
    req = PlannedRequest("1", "k", body)
    with BatchServer() as server:

        async def go() -> tuple[str, object]:
            client = openai.AsyncOpenAI(base_url=server.url, api_key="sk-test")
            line = json.dumps({"custom_id": req.custom_id, "method": "POST",
                               "url": "/v1/chat/completions", "body": body})  # fmt: skip
            up = await client.files.create(file=("b.jsonl", line.encode()), purpose="batch")
            store.add_file(up.id, run="r", model="gpt-4o-mini", base_url=server.url,
                           requests=[(req.custom_id, "1", "k")], n_requests=1, n_bytes=len(line))  # fmt: skip
            made = await client.batches.create(
                input_file_id=up.id, endpoint="/v1/chat/completions", completion_window="24h"
            )  # ... and the process dies here
            ex = BatchExecutor(client, store)
            report = await ex.submit([req])
            await ex.wait()
            return made.id, report

        made, report = run_sync(go)
        assert len(server.batches) == 1
        assert report.created == [made] and report.sent == 0 and report.in_flight == 1  # type: ignore[attr-defined]
        assert store.has_ok(req.custom_id) and server.paid[req.custom_id] == 1


def test_a_joint_codebook_sends_one_request_a_row(tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "headlines.yaml")
        .read_text()
        .replace("name: news-headlines", "name: news-headlines\nmode: joint")
    )
    (tmp_path / "joint.yaml").write_text(text)
    book = Codebook.from_yaml(tmp_path / "joint.yaml")
    data = EXAMPLES / "headlines.csv"
    with BatchServer(labels=HEADLINE_LABELS) as server:
        c = Coder(book, model="gpt-4o-mini", base_url=server.url, api_key="sk-test", batch=True)
        outcome = code_file_batch(c, data, tmp_path / "out.csv", id_column="id", progress="off")
        c.close()
        (batch,) = server.batches.values()
    rows = len(pd.read_csv(data))
    assert len(batch.lines) == rows == outcome.report.sent
    assert all("response_format" in line["body"] for line in batch.lines)
    with BatchStore(tmp_path / "out.csv.textcoder.sqlite") as bs:
        keys = bs.keys_of(batch.id)
    assert len(keys) == rows * 3  # one request serves the three variables' store keys
    assert len(read(tmp_path / "out.csv")) == rows


def test_progress_shows_request_counts_statuses_and_time_waited() -> None:
    import io

    from textcoder.batch_store import BatchRecord
    from textcoder.run.batch_progress import BatchProgress

    def rec(status: str, completed: int, failed: int) -> BatchRecord:
        return BatchRecord(
            "b1", "f1", "r", "", status, 10, completed, failed, None, None, 0, 0, False
        )

    out = io.StringIO()
    progress = BatchProgress("lines", stream=out, clock=iter([0.0, 5.0, 70.0, 4000.0]).__next__)
    progress.update([rec("in_progress", 3, 1)])
    progress.update([rec("in_progress", 3, 1)])  # nothing changed: no new line
    progress.update([rec("completed", 9, 1)])
    assert out.getvalue().splitlines() == [
        "textcoder: batch: 4/10 requests, 1 in_progress, 1 failed, waited 5s",
        "textcoder: batch: 10/10 requests, 1 completed, 1 failed, waited 1h06m",
    ]
    bar = io.StringIO()
    progress = BatchProgress("bar", stream=bar, clock=iter([0.0, 5.0]).__next__)
    progress.update([rec("in_progress", 3, 1)])
    progress.close()
    assert "4/10 requests" in bar.getvalue() and "1 in_progress" in bar.getvalue()
