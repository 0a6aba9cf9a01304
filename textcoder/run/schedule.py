"""Scheduling rows: `concurrency` workers over a lazy stream of rows, stopped by signals."""

from __future__ import annotations

import asyncio
import heapq
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from ..progress import Progress
from ..results import CodeResult
from .stats import RunStats, now

#: seconds that requests in flight may take to finish after SIGINT/SIGTERM before they are
#: dropped, unless the run gives its own (the request timeout: an answer being paid for is
#: waited for, since dropping it pays for it again on resume; a second signal stops at once)
STOP_GRACE = 5.0

#: rows that may finish past the oldest unfinished row: a row stuck in retries holds back at
#: most this many finished rows (their results wait in memory to be written in order); then
#: no new row is taken until it finishes. TEXTCODER_ROW_WINDOW sets another.
ROW_WINDOW = 10_000


def row_window() -> int:
    """`ROW_WINDOW`, or the environment's TEXTCODER_ROW_WINDOW (a positive whole number)."""
    value = os.environ.get("TEXTCODER_ROW_WINDOW", "")
    return int(value) if value.isdigit() and int(value) > 0 else ROW_WINDOW


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run; every answer received before is in the store."""

    def __init__(self, signame: str, stored: int) -> None:
        super().__init__(f"{signame}: stopped with {stored} answers stored")
        self.signame = signame
        self.stored = stored


class Scheduler:
    """Runs `code_row(row_id, text)` over rows, `concurrency` at a time."""

    def __init__(
        self,
        code_row: Callable[[str, str], Awaitable[CodeResult]],
        stats: RunStats,
        concurrency: int = 1,
        empty: Callable[[], CodeResult] | None = None,
        grace: float = STOP_GRACE,
    ) -> None:
        self.code_row = code_row
        self.stats = stats
        self.concurrency = max(1, concurrency)
        self.empty = empty
        self.grace = grace
        #: rows that may finish past the oldest unfinished one (at least two per worker)
        self.window = max(row_window(), 2 * self.concurrency)
        #: the signal that stopped the run, if one did
        self.interrupted: str | None = None
        #: rows taken so far; the rows taken, oldest first, and those of them finished
        self._taken = 0
        self._started: list[int] = []
        self._finished: set[int] = set()
        self._room: asyncio.Event | None = None

    async def run(
        self,
        items: Iterable[tuple[str, str]],
        progress: Progress,
        handle_signals: bool = False,
        on_row: Callable[[int, CodeResult], None] | None = None,
    ) -> None:
        """Code every (row id, text); `items` is consumed lazily, so memory stays flat.

        `on_row(index, result)` gets each row's results as the row is done (any order).
        With `handle_signals`, SIGINT/SIGTERM stop taking rows, give requests in flight
        `grace` seconds (a second signal: none), then the caller raises.
        """
        started = time.perf_counter()
        source: Iterator[tuple[int, tuple[str, str]]] = enumerate(items)
        self._taken, self._started, self._finished = 0, [], set()
        self._room = asyncio.Event()
        tasks = [
            asyncio.create_task(self._worker(source, progress, on_row))
            for _ in range(self.concurrency)
        ]
        heartbeat = asyncio.create_task(self._heartbeat(progress))
        installed = self._install(tasks, progress) if handle_signals else []
        loop = asyncio.get_running_loop()
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)  # ended, not left pending
            for sig in installed:
                loop.remove_signal_handler(sig)
            progress.close()
            self.stats.seconds += time.perf_counter() - started
            self.stats.ended = now()

    async def _worker(
        self,
        source: Iterator[tuple[int, tuple[str, str]]],
        progress: Progress,
        on_row: Callable[[int, CodeResult], None] | None,
    ) -> None:
        while self.interrupted is None:
            if self._taken >= self._oldest() + self.window:
                await self._wait_for_room()
                continue
            item = next(source, None)  # never awaits, so workers can share the iterator
            if item is None:
                return
            index, (row_id, text) = item
            self._taken = index + 1
            heapq.heappush(self._started, index)
            try:
                result = await self._code(row_id, text)
            finally:
                self._finish(index)
            self.stats.rows += 1
            progress.tick()
            if on_row is not None:
                on_row(index, result)

    async def _code(self, row_id: str, text: str) -> CodeResult:
        if not text.strip() and self.empty is not None:
            self.stats.empty += 1
            return self.empty()
        result = await self.code_row(row_id, text)
        errors = [r for r in result.values() if r.error is not None]
        if errors:
            self.stats.failed += 1
            if all(r.extra.get("permanent") for r in errors):
                self.stats.failed_permanent += 1
        return result

    def _oldest(self) -> int:
        """The oldest row taken and not finished (the next row when none is)."""
        heap = self._started
        while heap and heap[0] in self._finished:
            self._finished.discard(heapq.heappop(heap))
        return heap[0] if heap else self._taken

    def _finish(self, index: int) -> None:
        """A row is done; when it was the oldest, the workers held by the window may go on."""
        oldest = self._oldest()
        self._finished.add(index)
        if oldest == index and self._room is not None:
            room, self._room = self._room, asyncio.Event()
            room.set()

    async def _wait_for_room(self) -> None:
        """Until the oldest unfinished row finishes (the window stops taking rows till then)."""
        self.stats.held = True
        assert self._room is not None
        await self._room.wait()
        self.stats.held = False

    async def _heartbeat(self, progress: Progress) -> None:
        """Keep the progress line moving while no row finishes (a stall is shown, not hidden)."""
        while True:
            await asyncio.sleep(1.0)
            progress.refresh()

    def _install(self, tasks: list[asyncio.Task[None]], progress: Progress) -> list[signal.Signals]:
        """SIGINT/SIGTERM handlers: stop taking rows, cancel what is in flight after the grace."""
        loop = asyncio.get_running_loop()

        def cancel_all() -> None:
            for t in tasks:
                t.cancel()

        def on_signal(name: str) -> None:
            if self.interrupted is None:
                self.interrupted = name
                progress.note(f"{name}: finishing the requests in flight (again to stop at once)")
                loop.call_later(self.grace, cancel_all)
            else:
                cancel_all()

        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal, sig.name)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signals here: Ctrl-C still works
        return installed
