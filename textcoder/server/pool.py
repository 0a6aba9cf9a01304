"""The engines behind the server: requests queue in arrival order (FIFO) and each runs on one
engine copy in a worker thread, so the event loop stays free to accept, stream and notice
clients that went away.

Every job gets a cancel flag, set when its client disconnects, when the awaiting request is
cancelled (the server's shutdown grace ran out) or when the pool closes: generation stops at
the next token. The workers are daemon threads, so a job stuck in a long prompt evaluation
cannot hold the process after shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..backends.llama import LocalEngine
from ..backends.llama.generate import Cancelled, PromptCache

T = TypeVar("T")
Job = Callable[[PromptCache, threading.Event], Any]


class EnginePool:
    """Copies of one model answering one request each at a time; a busy copy gets an equal
    share of `threads` (None: each keeps its own thread count)."""

    def __init__(self, engines: Sequence[LocalEngine], threads: int | None = None) -> None:
        self.engines = list(engines)
        self.threads = threads
        self._busy = 0
        self._lock = threading.Lock()
        self._caches: queue.LifoQueue[PromptCache] = queue.LifoQueue()
        for e in reversed(self.engines):
            self._caches.put(PromptCache(e, self._share if threads else None))
        self._jobs: queue.Queue[tuple[Job, threading.Event, Callable[..., None]] | None]
        self._jobs = queue.Queue()
        self._live: set[threading.Event] = set()
        self._workers = [
            threading.Thread(target=self._work, name=f"textcoder-engine-{i}", daemon=True)
            for i in range(len(self.engines))
        ]
        for w in self._workers:
            w.start()

    @property
    def busy(self) -> int:
        """How many engine copies are answering a request now."""
        return self._busy

    def _share(self) -> int:
        return max(1, (self.threads or 1) // max(1, self._busy))

    async def run(self, job: Callable[[PromptCache, threading.Event], T],
                  cancel: threading.Event | None = None) -> T:  # fmt: skip
        """Run `job(cache, cancel)` on the next free engine; cancelling the await sets `cancel`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        flag = cancel or threading.Event()

        def settle(result: Any, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def done(result: Any, exc: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, result, exc)

        self._live.add(flag)
        self._jobs.put((job, flag, done))
        try:
            return await future
        except asyncio.CancelledError:
            flag.set()
            raise
        finally:
            self._live.discard(flag)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, flag, done = item
            if flag.is_set():
                done(None, Cancelled())
                continue
            cache = self._caches.get()  # the most recently used engine: it likely holds the prefix
            with self._lock:
                self._busy += 1
            try:
                done(job(cache, flag), None)
            except BaseException as exc:
                done(None, exc)
            finally:
                with self._lock:
                    self._busy -= 1
                self._caches.put(cache)

    def cancel_all(self) -> None:
        """Stop every job in flight or queued at its next token."""
        for flag in list(self._live):
            flag.set()

    def close(self, timeout: float = 5.0) -> bool:
        """Cancel everything and stop the workers; whether they all stopped within `timeout`."""
        self.cancel_all()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for w in self._workers:
            w.join(max(0.0, deadline - time.monotonic()))
        return not any(w.is_alive() for w in self._workers)
