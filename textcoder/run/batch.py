"""The batch executor: planned requests through OpenAI's Files and Batches API, at half price.

`submit(planned)` writes the requests a store lacks as JSONL (one `custom_id` per distinct
body), splits them into files within the limits (50,000 requests, 200 MB, one model a file),
uploads each (`purpose=batch`) and creates its batch (`completion_window: 24h`, metadata
naming the run); the file, the (row id, store key) pairs it serves and the batch are in the
store before the next file is written. `wait()` polls the batches with a growing interval,
feeding a progress display from `request_counts`, and `collect` reads each finished batch's
output and error files into the store as it reads them (lines joined on `custom_id`, in any
order). A request that a batch did not answer (an error line, `batch_expired`, a failed or
cancelled batch) keeps its error, and the next `submit` sends it again.

The executor knows nothing of codebooks or scoring: it takes bodies and returns answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .._exceptions import BackendError
from ..batch_store import TERMINAL, BatchRecord, BatchStore

ENDPOINT = "/v1/chat/completions"
#: OpenAI's limits on one batch input file (the current guide: 50,000 requests, 200 MB)
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000
#: test-only settings that lower the limits (e.g. to split 25 requests into three files)
ENV_MAX_REQUESTS = "TEXTCODER_BATCH_MAX_REQUESTS"
ENV_MAX_BYTES = "TEXTCODER_BATCH_MAX_BYTES"
#: seconds before the first status poll; it grows by `factor` up to `cap` (0 in tests)
ENV_POLL = "TEXTCODER_BATCH_POLL"
#: answers read from a result file are committed this many at a time
COMMIT_EVERY = 500


def custom_id_for(body: dict[str, Any]) -> str:
    """The request's `custom_id`: a hash of exactly the body sent, so identical requests share
    one line and a rerun finds the answer whichever file or batch carried it."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "tc-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


@dataclass(frozen=True)
class PlannedRequest:
    """One request a row needs: the row, the store key its answer serves, the exact body."""

    row_id: str
    store_key: str
    body: dict[str, Any]
    custom_id: str = ""

    def __post_init__(self) -> None:
        if not self.custom_id:
            object.__setattr__(self, "custom_id", custom_id_for(self.body))


@dataclass(frozen=True)
class BatchLimits:
    """How much one input file may hold."""

    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_BYTES

    @classmethod
    def from_env(cls) -> BatchLimits:
        """OpenAI's limits, lowered where the test-only environment variables say so."""
        req = int(os.environ.get(ENV_MAX_REQUESTS) or MAX_REQUESTS)
        size = int(os.environ.get(ENV_MAX_BYTES) or MAX_BYTES)
        return cls(max(1, min(req, MAX_REQUESTS)), max(1, min(size, MAX_BYTES)))


@dataclass
class PollPolicy:
    """When to ask again: `first` seconds, then each wait `factor` times longer, up to `cap`.

    `sleep` is injectable so that tests run the same loop on a controlled clock.
    """

    first: float = 2.0
    factor: float = 1.5
    cap: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @classmethod
    def from_env(cls) -> PollPolicy:
        value = os.environ.get(ENV_POLL)
        if value is None:
            return cls()
        first = max(0.0, float(value))
        return cls(first=first, cap=max(first, min(60.0, first * 8)))

    def delays(self) -> Iterable[float]:
        """The waits between polls, growing: 2, 3, 4.5, ... 60, 60, ..."""
        delay = self.first
        while True:
            yield delay
            delay = min(self.cap, delay * self.factor)


class Display(Protocol):
    """What shows a wait's progress (see `batch_progress.py`)."""

    def update(self, batches: list[BatchRecord]) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class SubmitReport:
    """What `submit` did: batches created, batches re-attached, requests sent and skipped."""

    created: list[str] = field(default_factory=list)
    attached: set[str] = field(default_factory=set)
    sent: int = 0
    answered: int = 0
    in_flight: int = 0
    files: list[str] = field(default_factory=list)
    run: str = ""


class _Open:
    """The input file being written: its lines on disk, its requests' (cid, row, key)."""

    def __init__(self, directory: Path, model: str) -> None:
        self.model = model
        self.path = directory / f"batch-{secrets.token_hex(6)}.jsonl"
        self.fh = self.path.open("wb")
        self.n = 0
        self.bytes = 0
        self.ids: set[str] = set()
        self.serves: list[tuple[str, str, str]] = []

    def fits(self, size: int, limits: BatchLimits) -> bool:
        return self.n + 1 <= limits.max_requests and self.bytes + size <= limits.max_bytes


def _line(req: PlannedRequest) -> bytes:
    """One input line in the Batch API's format."""
    line = {"custom_id": req.custom_id, "method": "POST", "url": ENDPOINT, "body": req.body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class BatchExecutor:
    """Sends planned requests as batches on `client` (an `openai.AsyncOpenAI`) and reads the
    answers back into `store`; `run` names the textcoder run in each batch's metadata."""

    def __init__(
        self,
        client: Any,
        store: BatchStore,
        *,
        run: str | None = None,
        base_url: str = "",
        metadata: dict[str, str] | None = None,
        limits: BatchLimits | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.run = run or new_run_id()
        self.base_url = base_url
        self.metadata = {k[:64]: str(v)[:512] for k, v in (metadata or {}).items()}
        self.limits = limits or BatchLimits.from_env()
        self.poll = poll or PollPolicy.from_env()
        #: the batches this run waits for: those it created and those it re-attached to
        self.watch: set[str] = set()

    # submitting -------------------------------------------------------------------------------

    async def reattach(self) -> list[str]:
        """Give every uploaded file with no recorded batch its batch: the server's, if one was
        created before the last run died (matched on the input file), else a new one."""
        orphans = self.store.files_without_batch()
        if not orphans:
            return []
        found: dict[str, Any] = {}
        wanted = {f for f, _ in orphans}
        async for b in self.client.batches.list(limit=100):
            if b.input_file_id in wanted:
                found.setdefault(b.input_file_id, b)
                if len(found) == len(wanted):
                    break
        out = []
        for file_id, _ in orphans:
            batch = found.get(file_id)
            if batch is None:
                batch = await self._create(file_id)
            else:
                self.store.add_batch(batch, run=self.run, base_url=self.base_url)
            self.watch.add(batch.id)
            out.append(batch.id)
        return out

    async def submit(
        self,
        planned: Iterable[PlannedRequest] | AsyncIterable[PlannedRequest],
        *,
        reuse: bool = True,
    ) -> SubmitReport:
        """Send every planned request the store lacks; re-attach to batches holding the rest.

        With `reuse` off (`--fresh`), every request is sent again.
        """
        report = SubmitReport(run=self.run)
        report.created += await self.reattach()
        # every batch of this server still uncollected is waited for and read back, even one
        # this run plans nothing for (its rows were coded online since): none is left stuck
        self.store.settle_answered()
        self.watch.update(
            b.batch_id
            for b in self.store.batches(uncollected=True)
            if b.base_url in ("", self.base_url)
        )
        with tempfile.TemporaryDirectory(prefix="textcoder-batch-") as tmp:
            current: _Open | None = None
            async for req in _aiter(planned):
                if reuse and self.store.has_ok(req.custom_id):
                    report.answered += 1
                    continue
                holder = self.store.in_flight(req.custom_id) if reuse else None
                if holder is not None:
                    report.in_flight += 1
                    report.attached.add(holder)
                    self.watch.add(holder)
                    continue
                current = await self._add(current, req, Path(tmp), report)
            if current is not None:
                await self._flush(current, report)
        return report

    async def _add(
        self, current: _Open | None, req: PlannedRequest, tmp: Path, report: SubmitReport
    ) -> _Open | None:
        """Write one request into the open file (a new one when it would not fit)."""
        model = str(req.body.get("model", ""))
        if current is not None and req.custom_id in current.ids:
            current.serves.append((req.custom_id, req.row_id, req.store_key))
            return current
        line = _line(req)
        if len(line) > self.limits.max_bytes:
            msg = f"the request is {len(line):,} bytes, more than a batch file may hold"
            self.store.put_answers([(req.custom_id, "", False, None, msg)])
            return current
        if current is not None and (
            current.model != model or not current.fits(len(line), self.limits)
        ):
            await self._flush(current, report)
            current = None
        if current is None:
            current = _Open(tmp, model)
        current.fh.write(line)
        current.n += 1
        current.bytes += len(line)
        current.ids.add(req.custom_id)
        current.serves.append((req.custom_id, req.row_id, req.store_key))
        report.sent += 1
        return current

    async def _flush(self, current: _Open, report: SubmitReport) -> None:
        """Upload a full file, record it with what it serves, then create and record its batch."""
        current.fh.close()
        # bytes, not the path: the client would read a path in an anyio worker thread, which a
        # Ctrl-C while waiting leaves alive, and the interpreter would then never exit
        content = current.path.read_bytes()
        uploaded = await self.client.files.create(
            file=(current.path.name, content), purpose="batch"
        )
        del content
        current.path.unlink(missing_ok=True)
        self.store.add_file(
            uploaded.id,
            run=self.run,
            model=current.model,
            base_url=self.base_url,
            requests=current.serves,
            n_requests=current.n,
            n_bytes=current.bytes,
        )
        report.files.append(uploaded.id)
        batch = await self._create(uploaded.id)
        report.created.append(batch.id)
        self.watch.add(batch.id)

    async def _create(self, file_id: str) -> Any:
        batch = await self.client.batches.create(
            input_file_id=file_id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"textcoder_run": self.run, **self.metadata},
        )
        self.store.add_batch(batch, run=self.run, base_url=self.base_url)
        return batch

    # waiting and collecting -------------------------------------------------------------------

    async def wait(self, display: Display | None = None) -> list[BatchRecord]:
        """Poll the watched batches until each has finished, collecting each as it does."""
        pending = sorted(
            b for b in self.watch if (rec := self.store.batch(b)) is not None and not rec.collected
        )
        delays = iter(self.poll.delays())
        try:
            while pending:
                still = []
                for batch_id in pending:
                    batch = await self.client.batches.retrieve(batch_id)
                    self.store.update_batch(batch)
                    if batch.status in TERMINAL:
                        n = await self.collect(batch)
                        if display is not None:
                            display.note(f"batch {batch_id} {batch.status}: {n:,} answers read")
                    else:
                        still.append(batch_id)
                if display is not None:
                    display.update(self.records())
                pending = still
                if pending:
                    await self.poll.sleep(next(delays))
        finally:
            if display is not None:
                display.close()
        return self.records()

    def records(self) -> list[BatchRecord]:
        """The watched batches as last seen."""
        return [r for b in sorted(self.watch) if (r := self.store.batch(b)) is not None]

    async def collect(self, batch: Any) -> int:
        """Read a finished batch's output and error files into the store; a request neither
        answered gets the batch's fate as its error. The number of lines read."""
        n = 0
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                n += await self._read_file(batch.id, file_id)
        fate = _fate(batch)
        self.store.put_answers(
            (cid, batch.id, False, None, fate) for cid in list(self.store.unanswered(batch.id))
        )
        self.store.mark_collected(batch.id)
        return n

    async def _read_file(self, batch_id: str, file_id: str) -> int:
        """Stream one result file, committing its answers every `COMMIT_EVERY` lines."""
        rows: list[tuple[str, str, bool, str | None, str | None]] = []
        n = 0
        async with self.client.files.with_streaming_response.content(file_id) as resp:
            async for line in resp.iter_lines():
                if not line.strip():
                    continue
                rows.append(parse_result_line(batch_id, line))
                n += 1
                if len(rows) >= COMMIT_EVERY:
                    self.store.put_answers(rows)
                    rows = []
        self.store.put_answers(rows)
        return n

    async def cancel(self, batch_ids: Iterable[str]) -> list[Any]:
        """Ask the server to cancel these batches; their state as it answers."""
        out = []
        for batch_id in batch_ids:
            batch = await self.client.batches.cancel(batch_id)
            self.store.update_batch(batch)
            out.append(batch)
        return out


def parse_result_line(batch_id: str, line: str) -> tuple[str, str, bool, str | None, str | None]:
    """(custom_id, batch id, ok, completion JSON, error) of one output or error line."""
    try:
        data = json.loads(line)
        cid = str(data["custom_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"batch {batch_id}: a result line is not JSON: {line[:200]!r}") from exc
    resp = data.get("response") or {}
    err = data.get("error")
    status = resp.get("status_code")
    body = resp.get("body")
    if status == 200 and isinstance(body, dict) and not err:
        return cid, batch_id, True, json.dumps(body, ensure_ascii=False), None
    if isinstance(err, dict) and err:
        message = f"{err.get('code') or 'error'}: {err.get('message') or ''}".strip()
    else:
        inner = body.get("error") if isinstance(body, dict) else None
        detail = inner.get("message") if isinstance(inner, dict) else (inner or body)
        message = f"status {status}: {detail}"
    return cid, batch_id, False, None, f"batch {batch_id}: {message}"


def _fate(batch: Any) -> str:
    """Why a finished batch left a request unanswered."""
    status = batch.status
    if status == "expired":
        return f"batch {batch.id}: batch_expired: not run within the 24h completion window"
    if status == "failed":
        errors = getattr(batch, "errors", None)
        detail = "; ".join(str(e.message) for e in (errors.data or [])) if errors else ""
        return f"batch {batch.id}: the batch failed" + (f": {detail}" if detail else "")
    if status == "cancelled":
        return f"batch {batch.id}: cancelled before this request ran"
    return f"batch {batch.id}: {status}, but no answer came back for this request"


def new_run_id() -> str:
    """A run's name: its start time and a random tail (`20261201T190512Z-3f9a1c`)."""
    now = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> Any:
    """Iterate a plain or an async iterable alike."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
