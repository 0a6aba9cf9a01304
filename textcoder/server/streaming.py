"""Streamed answers: a pool job that emits items as it generates, read as an async iterator,
and the server-sent-event framing every streaming route shares.

A client that hangs up closes the iterator, which sets the job's cancel flag: the engine is
freed at its next token. An error after the stream started becomes an error event (the
`openai` client raises it as `APIError`), never a broken connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..backends.llama.generate import Cancelled, PromptCache
from .errors import APIError, as_api_error
from .state import ServerState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Emit = Callable[[Any], None]
#: a job run on an engine copy: (its prompt cache, the cancel flag, emit) -> its result
StreamJob = Callable[[PromptCache, threading.Event, Emit], Any]


@dataclass(frozen=True)
class Done:
    """The last item of `emitted`: what the job returned."""

    result: Any


_END = object()


async def emitted(state: ServerState, job: StreamJob) -> AsyncIterator[Any]:
    """The items `job` emits as they come, then `Done(result)`; an APIError if it failed."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancel = threading.Event()

    def emit(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    task = asyncio.ensure_future(state.pool.run(lambda c, flag: job(c, flag, emit), cancel))
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while (item := await queue.get()) is not _END:
            yield item
        error = task_error(task)
        if error is not None:
            raise error
        if not task.cancelled() and task.exception() is None:
            yield Done(task.result())
    finally:
        cancel.set()  # a client that went away frees the engine at the next token
        task.add_done_callback(task_error)


def task_error(task: asyncio.Future[Any]) -> APIError | None:
    """The error a finished job ended with, as the client should see it (else None)."""
    exc = None if task.cancelled() else task.exception()
    if exc is None or isinstance(exc, Cancelled):
        return None
    return as_api_error(exc)


def sse(body: dict[str, Any], event: str | None = None) -> str:
    """One server-sent event carrying `body` as JSON (with an `event:` line if named)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def framed(events: AsyncIterator[str], done: bool = True) -> AsyncIterator[str]:
    """`events`, then `data: [DONE]` (Chat and legacy Completions); an error as an event."""
    try:
        async for text in events:
            yield text
    except APIError as error:
        yield sse(error.body())
    if done:
        yield "data: [DONE]\n\n"
