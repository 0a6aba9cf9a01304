"""Coding a table through OpenAI's Batch API (`textcoder code --batch`).

The batch executor (`run/batch.py`) between the request plan and the row coder:

1. Plan: each row's units (`plan.Planner`) that the store lacks give their requests, as the
   exact bodies the online path would post, each with the unit's store keys.
2. Submit and wait (the executor); every batch is in the store the moment it is created.
3. Score: `Coder.code_file` runs as online, with `BatchAnswers` in place of the online
   executor: each request is answered from the batch's results (or fails with the error its
   batch gave it), so answers go through scoring, the store and the output exactly as online
   answers do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from ._exceptions import BackendError, UsageError
from .asyncsync import run_sync
from .backends.base import Answer, ChatRequest, Request
from .backends.openai import OpenAIBackend, completion_from_json
from .batch_store import BatchRecord, BatchStore
from .coder import Coder
from .plan import Planner
from .run.batch import BatchExecutor, PlannedRequest, SubmitReport, custom_id_for
from .run.batch_progress import BatchProgress
from .run.online import OnlineExecutor
from .run.stats import RunStats
from .store import Store, default_store_path
from .table_rows import scan_rows, table_rows
from .tables import CHUNK_ROWS


def chat_body(backend: OpenAIBackend, request: Request) -> dict[str, Any]:
    """The JSON body the online path would post for `request`."""
    if not isinstance(request, ChatRequest):
        raise UsageError("--batch sends chat requests only (exact scoring needs the local engine)")
    return backend.request_body(request.messages, request.params)


class BatchAnswers(OnlineExecutor):
    """The online executor's shape, answering from the batch results in the store (by
    `custom_id`) instead of the network; usage is counted as online."""

    def __init__(self, backend: OpenAIBackend, store: BatchStore, stats: RunStats) -> None:
        super().__init__(backend, stats)
        self.openai = backend
        self.results = store

    async def _send(self, request: Request) -> Answer:
        custom_id = custom_id_for(chat_body(self.openai, request))
        answer = self.results.answer(custom_id)
        if answer is None:
            holder = self.results.in_flight(custom_id)
            if holder is not None:
                raise BackendError(f"not coded yet: its request is in batch {holder}, in flight")
            raise BackendError("not coded: its request was not sent in a batch")
        if not answer.ok or answer.body is None:
            raise BackendError(answer.error or f"batch {answer.batch_id}: no answer")
        return completion_from_json(answer.body)


def plan_rows(
    planner: Planner,
    backend: OpenAIBackend,
    store: Store,
    rows: Iterable[tuple[str, str]],
    fresh: bool = False,
) -> Iterator[PlannedRequest]:
    """Every request of the rows' units that the store lacks, with each unit's store keys."""
    for row_id, text in rows:
        if not text.strip():
            continue
        for unit in planner.plan(text):
            if not fresh and all(store.has_ok(key, row_id) for key in unit.keys):
                continue
            for request in unit.requests:
                body = chat_body(backend, request)
                custom_id = custom_id_for(body)
                for key in unit.keys:
                    yield PlannedRequest(row_id, key, body, custom_id)


@dataclass
class BatchOutcome:
    """What a batch run did: its submission, its batches, and the coding run's statistics
    (None when it did not wait)."""

    report: SubmitReport
    batches: list[BatchRecord]
    stats: RunStats | None
    store: Path

    def manifest(self) -> dict[str, Any]:
        """What the manifest records about the batches."""
        return {
            "run": self.report.run,
            "created": self.report.created,
            "attached": sorted(self.report.attached),
            "requests_sent": self.report.sent,
            "requests_in_flight_before": self.report.in_flight,
            "answers_already_in_store": self.report.answered,
            "batches": [b.as_dict() for b in self.batches],
            "file_ids": sorted(
                {
                    f
                    for b in self.batches
                    for f in (b.input_file_id, b.output_file_id, b.error_file_id)
                    if f
                }
            ),
        }


def code_file_batch(
    coder: Coder,
    data: str | Path,
    output: str | Path,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    store: str | Path | None = None,
    progress: str = "auto",
    wait: bool = True,
    gold: Any = None,
    chunksize: int = CHUNK_ROWS,
    warn: Callable[[str], None] | None = None,
    digits: int | None = None,
) -> BatchOutcome:
    """Code `data` into `output` through the Batch API: plan, submit (or re-attach), wait,
    then score every answer as an online run would. With `wait` off, return after submitting
    (nothing is written); the same call later collects."""
    backend = coder.backend
    if not isinstance(backend, OpenAIBackend):
        raise UsageError("--batch needs OpenAI or a server with /v1/files and /v1/batches")
    path = Path(store) if store is not None else coder.store_path or default_store_path(output)
    answers = coder._open_store(path)
    assert answers is not None
    batches = BatchStore(answers.db)
    scan_rows(data, text_column, id_column, chunksize, warn)
    planner = coder._runner(answers).planner
    rows = table_rows(data, text_column, id_column, chunksize)
    meta = {
        "textcoder_codebook": coder.codebook.name or str(coder.codebook.path or ""),
        "textcoder_input": str(data),
        "textcoder_store": str(path),
    }
    base_url = str(backend.describe().get("base_url", ""))

    async def go() -> tuple[SubmitReport, list[BatchRecord]]:
        client = backend.client.with_options(max_retries=5)
        executor = BatchExecutor(client, batches, base_url=base_url, metadata=meta)
        planned = plan_rows(planner, backend, answers, rows, coder.fresh)
        report = await executor.submit(planned, reuse=not coder.fresh)
        if wait:
            return report, await executor.wait(BatchProgress(progress))
        return report, executor.records()

    try:
        report, records = run_sync(go)
    except openai.APIError as exc:  # the batches made so far are recorded: a rerun re-attaches
        raise BackendError(f"the Batch API at {base_url}: {exc}") from exc
    if not wait:
        return BatchOutcome(report, records, None, path)
    coder.executor = lambda runner: BatchAnswers(backend, batches, runner.stats)
    try:
        stats = coder.code_file(
            data,
            output,
            text_column=text_column,
            id_column=id_column,
            store=path,
            progress=progress,
            gold=gold,
            chunksize=chunksize,
            digits=digits,
        )
    finally:
        coder.executor = None
    return BatchOutcome(report, records, stats, path)
