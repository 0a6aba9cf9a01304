"""Runs that survive hostile input and flaky fleets: malformed tables, broken answers, a pool
that recovers, a batch store that never sticks, options checked in one place. Every test goes
through the command line against the loopback stand-ins (tests/flaky_server.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from textcoder.scoring.result import VariableResult
from textcoder.store import Store

from .batch_server import BatchServer
from .conftest import EXAMPLES, textcoder, wait_for
from .flaky_server import FlakyServer
from .test_batch import code_args as batch_args
from .test_batch import table as batch_table
from .test_runs import _start_held, write_data

BOOK = EXAMPLES / "sentiment.yaml"


def _code(data: Path, server: FlakyServer | list[FlakyServer], *extra: str) -> tuple[int, str]:
    urls = [
        a for s in (server if isinstance(server, list) else [server]) for a in ("--base-url", s.url)
    ]
    proc = textcoder(
        "code", str(data), "-c", str(BOOK), *urls, "--api-key", "sk-test", "--timeout", "5",
        *extra,
    )  # fmt: skip
    return proc.returncode, proc.stderr


def textcoder_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with extra environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "textcoder", *args],
        capture_output=True, text=True, env={**os.environ, **env},
    )  # fmt: skip


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())  # type: ignore[no-any-return]


# the input table ---------------------------------------------------------------------------


def test_a_row_with_an_extra_field_is_one_error_naming_its_line(tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text("id,text\n1,first, with comma\n2,second\n3,third\n")
    later = tmp_path / "later.csv"
    later.write_text("id,text\n1,first\n2,second\n3,third, with comma\n4,fourth\n")
    with FlakyServer() as server:
        for data, line in ((first, 2), (later, 4)):
            rc, err = _code(data, server, "--id-column", "id")
            assert rc != 0 and f"{data}: line {line}: " in err, err
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
            assert not (tmp_path / f"{data.stem}.coded.csv").exists()
        assert server.requests() == []  # nothing sent, not even the probe


def test_jsonl_ids_are_kept_as_written_and_a_null_id_names_its_line(tmp_path: Path) -> None:
    ids = [1590000000000000001 + i for i in range(4)]
    rows = [{"id": i, "text": f"text number {n}"} for n, i in enumerate(ids)]
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in [*rows[:2], {"id": None, "text": "x"}]))
    with FlakyServer() as server:
        rc, err = _code(good, server, "--id-column", "id", "--scoring", "logprobs")
        assert rc == 0, err
        with (tmp_path / "good.coded.jsonl").open() as f:
            written = [json.loads(line, parse_int=str)["id"] for line in f]
        assert written == [str(i) for i in ids]
        sent = len(server.requests())
        rc, err = _code(bad, server, "--id-column", "id")
        assert rc != 0 and f"{bad}: line 3: no id in column 'id'" in err, err
        assert len(server.requests()) == sent
    db = sqlite3.connect(tmp_path / "good.coded.jsonl.textcoder.sqlite")
    stored = sorted(r[0] for r in db.execute("SELECT DISTINCT row_id FROM answers"))
    db.close()
    assert stored == [str(i) for i in ids]


# answers and servers -----------------------------------------------------------------------


def test_a_malformed_answer_is_retried_on_another_server_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    ids = write_data(data, 40)
    with FlakyServer(models=["m"]) as good, FlakyServer(default="html", models=["m"]) as bad:
        rc, err = _code(
            data, [good, bad], "--id-column", "id", "--model", "m", "--scoring", "logprobs",
            "--concurrency", "4",
        )  # fmt: skip
        assert rc == 0, err
        assert len(good.answers_by_key()) == 40 and bad.requests()
    out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
    assert list(out["id"]) == ids and not any(out["sentiment_error"])
    by_url = {s["base_url"].rstrip("/"): s for s in _manifest(tmp_path / "d.coded.csv")["servers"]}
    assert by_url[bad.url]["failures"] == by_url[bad.url]["requests"] > 0
    assert by_url[bad.url]["mean_latency_s"] is None


def test_a_default_run_needs_no_optional_route(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    write_data(data, 6)
    with FlakyServer(any_route=True) as server:  # a chat completion from /tokenize too
        rc, err = _code(data, server)
        assert rc == 0 and "Unclosed" not in err, err
        out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
        assert len(out) == 6 and not any(out["sentiment_error"])
        rc, err = _code(data, server, "--scoring", "exact", "-o", str(tmp_path / "x.csv"))
        assert rc == 1 and "scoring 'exact' needs" in err, err
        assert "Unclosed" not in err and "Traceback" not in err


# options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "0"), ("--timeout", "-1"), ("--timeout", "nan"), ("--timeout", "inf"),
        ("--rpm", "0"), ("--rpm", "-5"), ("--tpm", "0"), ("--max-retries", "-1"),
        ("--max-tokens", "0"), ("--temperature", "-2"), ("--threshold", "7"),
        ("--concurrency", "0"), ("--n", "0"),
    ],
)  # fmt: skip
def test_a_number_out_of_range_is_one_line_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    data = tmp_path / "d.csv"
    write_data(data, 2)
    with FlakyServer() as server:
        rc, err = _code(data, server, "--scoring", "logprobs", option, value)
        assert rc != 0 and err.startswith(f"textcoder: error: {option} must be "), err
        assert len(err.strip().splitlines()) == 1, err
        assert server.requests() == []


# the lock ----------------------------------------------------------------------------------


def test_a_symlinked_store_or_a_shared_output_meets_the_live_run(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    write_data(data, 40)
    store = tmp_path / "x.sqlite"
    link = tmp_path / "link.sqlite"
    link.symlink_to(store)
    out = tmp_path / "o.csv"
    with FlakyServer() as server:
        args = ["code", str(data), "-c", str(BOOK), "--id-column", "id", "--base-url", server.url]
        args += ["--scoring", "logprobs", "--concurrency", "1", "--api-key", "sk-test"]
        first = _start_held([*args, "--store", str(store), "-o", str(out)], store, server)
        try:
            for extra, what in (
                (["--store", str(link), "-o", str(tmp_path / "other.csv")], "store"),
                (["--store", str(tmp_path / "y.sqlite"), "-o", str(out)], "output"),
            ):
                proc = textcoder(*args, *extra)
                assert proc.returncode == 1, proc.stderr
                assert f"pid {first.pid}" in proc.stderr and f"using this {what}" in proc.stderr
            assert set(server.answers_by_key().values()) == {1}  # nothing paid twice
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.communicate(timeout=30)


# the batch store ---------------------------------------------------------------------------


def test_a_batch_whose_rows_were_coded_online_never_sticks(tmp_path: Path) -> None:
    data, out = batch_table(tmp_path / "in.csv", 4), tmp_path / "out.csv"
    store = tmp_path / "out.csv.textcoder.sqlite"
    env = {"TEXTCODER_BATCH_POLL": "0"}
    with BatchServer() as server:
        server.hold.set()  # the batch stays in progress
        assert (
            textcoder_env(env, *batch_args(server, data, out, "--batch", "--no-wait")).returncode
            == 0
        )
        online = textcoder_env(env, *batch_args(server, data, out, "--no-batch"))
        assert online.returncode == 0, online.stderr
        again = textcoder_env(env, *batch_args(server, data, out))
        assert again.returncode == 0, again.stderr
        assert sum(server.online.values()) == 4  # the plain run reused every answer
        assert textcoder_env(env, *batch_args(server, data, out, "--fresh")).returncode == 0
    data2, out2 = batch_table(tmp_path / "in2.csv", 3), tmp_path / "out2.csv"
    store2 = tmp_path / "out2.csv.textcoder.sqlite"
    with BatchServer() as server:
        server.hold.set()
        assert (
            textcoder_env(env, *batch_args(server, data2, out2, "--batch", "--no-wait")).returncode
            == 0
        )
        cancel = textcoder_env(env, "batches", "--store", str(store2), "--cancel")
        assert cancel.returncode == 0, cancel.stderr
        refused = textcoder_env(env, *batch_args(server, data2, out2))
        assert refused.returncode == 1 and "not yet collected" in refused.stderr
        assert "--cancel" not in refused.stderr and "they are cancelled" in refused.stderr
    assert store.exists()


# the pool ----------------------------------------------------------------------------------


def test_a_server_killed_and_restarted_during_a_run_gets_requests_again(tmp_path: Path) -> None:
    """Two servers, one killed with requests in flight and restarted on its port mid-run: the
    run ends well with every row coded, and the server that came back answered some rows.
    The servers hold their answers at set points (both full before the kill; `steady` from
    600 rows past it until the server is back), so the run cannot end before the server that
    came back answered, however slow the machine. How soon the pool probes is tested on a
    controlled clock (tests/test_servers_pool.py); the deadlines here are safety nets."""
    data = tmp_path / "d.csv"
    ids = write_data(data, 1000)
    out = tmp_path / "d.coded.csv"
    first, width = 40, 8  # answers each server gives before holding; requests in flight each
    with FlakyServer(delay=0.05, models=["m"], hold_after=first) as steady:
        second = FlakyServer(delay=0.05, models=["m"], hold_after=first).start()
        port = second.port
        args = ["code", str(data), "-c", str(BOOK), "--id-column", "id", "--scoring", "logprobs"]
        args += ["--base-url", steady.url, "--base-url", second.url, "--model", "m"]
        args += ["--api-key", "sk-test", "--concurrency", str(width), "--timeout", "30"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "textcoder", *args, "--quiet"], stderr=subprocess.PIPE, text=True
        )
        back = None
        try:
            wait_for(
                lambda: min(len(steady.requests()), len(second.requests())) >= first + width,
                "both servers full",
                proc,
            )
            second.kill()  # its requests in flight are dropped
            # the run goes on without it; `steady` holds again 600 rows on, till it is back
            # (were that before the first probe, every worker would wait on `steady` until the
            # held requests' 30 s timeout: a slower pass, never a failure)
            done = len(steady.requests())
            steady.hold_after = done + 600
            steady.release()
            wait_for(lambda: len(steady.requests()) >= done + 300, "300 rows on `steady`", proc)
            back = restarted = FlakyServer(delay=0.05, models=["m"], port=port).start()
            wait_for(lambda: bool(restarted.answers_by_key()), "the server back answers", proc)
            steady.hold_after = None
            steady.release()
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
            if back is not None:
                back.stop()
        assert proc.returncode == 0, err
        assert back.answers_by_key()
    coded = pd.read_csv(out, keep_default_na=False)
    assert list(coded["id"]) == ids and not any(coded["sentiment_error"])


def _third_fails(key: str, attempt: int) -> str:
    return "503" if (sum(key.encode()) + attempt) % 3 == 0 else "ok"


def test_a_server_failing_one_request_in_three_keeps_its_share(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    write_data(data, 200)
    with (
        FlakyServer(delay=0.01, models=["m"]) as good,
        FlakyServer(delay=0.01, models=["m"], plan_fn=_third_fails, retry_after=None) as loaded,
    ):
        rc, err = _code(
            data, [good, loaded], "--id-column", "id", "--model", "m", "--scoring", "logprobs",
            "--concurrency", "4",
        )  # fmt: skip
        assert rc == 0, err
        # not sidelined: about half the first tries, plus its failures' retries elsewhere
        assert len(loaded.requests()) >= 85, len(loaded.requests())
        assert len(good.answers_by_key() + loaded.answers_by_key()) == 200


# smaller things ----------------------------------------------------------------------------


def test_stale_temporaries_bad_files_and_warnings(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": f"text {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "d.coded.jsonl"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f"d.coded.jsonl.{gone.stdout.strip()}.tmp"
    live = tmp_path / f"d.coded.jsonl.{os.getpid()}.tmp"
    stale.write_text("left by a killed run")
    live.write_text("a live run's")
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes("id,text\n1,café\n".encode() + "2,café bar\n".encode("latin-1"))
    fake = tmp_path / "book.xlsx"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("notes.txt", "not a workbook")
    with FlakyServer() as server:
        proc = subprocess.run(
            [sys.executable, "-W", "default", "-m", "textcoder", "code", str(data), "-c", str(BOOK),
             "--base-url", server.url, "--api-key", "sk-test", "--scoring", "logprobs"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "ResourceWarning" not in proc.stderr and "unclosed" not in proc.stderr, proc.stderr
        assert not stale.exists() and live.exists() and out.exists()
        rc, err = _code(mixed, server, "--scoring", "logprobs")
        assert rc == 1 and f"{mixed}: line 3: not UTF-8" in err, err
        rc, err = _code(fake, server, "--scoring", "logprobs")
        assert rc == 1 and "not an Excel workbook" in err and "KeyError" not in err, err
        assert server.requests()  # only the first run sent anything
        assert len(server.requests()) == 3


def test_the_batch_closing_line_does_not_ask_to_resend_refused_rows(tmp_path: Path) -> None:
    data, out = batch_table(tmp_path / "in.csv", 4), tmp_path / "out.csv"
    with BatchServer(plan={"<r002>": ["error"]}) as server:
        proc = textcoder_env(
            {"TEXTCODER_BATCH_POLL": "0"}, *batch_args(server, data, out, "--batch")
        )
    assert proc.returncode == 1, proc.stderr
    assert "1 would fail the same way again" in proc.stderr, proc.stderr
    assert "for a passing reason" not in proc.stderr


# a slow row --------------------------------------------------------------------------------


def test_a_stuck_row_holds_back_a_bounded_window_and_the_progress_line_says_so(
    tmp_path: Path,
) -> None:
    """Row r001 gets three 429s, then the server holds its fourth try in flight until the test
    releases it: the row stays stuck for as long as the test looks, so the window (no row taken
    past it) and the progress line (printed every 5 s off a terminal, a stall included) are
    checked while it waits, not raced. The 60 s deadline is a safety net."""
    data = tmp_path / "d.csv"
    ids = write_data(data, 300)
    window = 20
    said = (
        "1 stalled (waiting to retry)",
        "3 retries",
        "new rows wait for the oldest unfinished row",
    )
    err_path = tmp_path / "err.txt"

    def rows_asked(server: FlakyServer) -> set[int]:
        return {int(e.key.split("<r")[1][:3]) for e in server.requests()}

    def said_so() -> bool:
        lines = err_path.read_text().splitlines()
        return any(all(s in line for s in said) for line in lines)

    with FlakyServer({"<r001>": ["429"] * 3 + ["hold"]}, retry_after=0.2) as server:
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "textcoder", "code", str(data), "-c", str(BOOK),
                 "--id-column", "id", "--base-url", server.url, "--api-key", "sk-test",
                 "--scoring", "logprobs", "--concurrency", "4", "--timeout", "300"],
                stderr=err, env={**os.environ, "TEXTCODER_ROW_WINDOW": str(window)},
            )  # fmt: skip
        try:
            # rows r000..r020 asked (r001 four times, its last try held) and the line said so
            wait_for(
                lambda: len(server.requests()) >= window + 4 and said_so(),
                "the window full and a progress line on the stall",
                proc,
            )
            assert rows_asked(server) == set(range(window + 1))  # none past the window
            assert server.answered("<r001>") == 0 and len(server.requests()) == window + 4
            server.release()
            assert proc.wait(timeout=60) == 0, err_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert rows_asked(server) == set(range(300))
        assert set(server.answers_by_key().values()) == {1}  # every row answered once
    out = pd.read_csv(tmp_path / "d.coded.csv", keep_default_na=False)
    assert list(out["id"]) == ids and not any(out["sentiment_error"])


# commits in groups -------------------------------------------------------------------------


def test_answers_are_committed_in_groups_within_the_window(tmp_path: Path) -> None:
    from textcoder.store import COMMIT_EVERY

    path = tmp_path / "s.sqlite"
    result = VariableResult(label="a", probs={"a": 1.0}, other=0.0)

    def seen() -> int:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        finally:
            db.close()

    async def run() -> tuple[int, int, int]:
        store = Store(path)
        for i in range(10):
            store.put("k", str(i), "v", result, ok=True)
        early = seen()  # a group is not committed answer by answer
        end = time.monotonic() + 10
        while seen() < 10 and time.monotonic() < end:  # the timer commits the group
            await asyncio.sleep(0.01)
        timed = seen()
        for i in range(10, 10 + COMMIT_EVERY):
            store.put("k", str(i), "v", result, ok=True)
        full = seen()  # a full group is committed at once
        store.close()
        return early, timed, full

    early, timed, full = asyncio.run(run())
    assert (early, timed) == (0, 10)
    assert full >= COMMIT_EVERY
