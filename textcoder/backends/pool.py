"""Several OpenAI-compatible servers as one backend: each request goes to the live server
with the fewest requests in flight; a failing server sits out a growing backoff and its
requests go to the others; it comes back when it answers again.

The servers must serve the same model (checked with `GET /v1/models` at start); a server
that does not answer then is down, not a mix: the run starts on the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import openai

from .._exceptions import BackendError, UsageError
from ..retry import RetryPolicy, is_retryable
from .base import (
    Backend,
    Capabilities,
    Completion,
    CompletionParams,
    ContinuationRequest,
    ContinuationScores,
    Message,
)
from .capabilities import probe_server
from .openai import OpenAIBackend

#: seconds a failed server sits out: doubled at each failure in a row, capped
BACKOFF_START, BACKOFF_CAP = 1.0, 30.0


@dataclass
class Server:
    """One server of the pool, and what it did."""

    backend: OpenAIBackend
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    #: failures in a row (sets the backoff), and until when the server sits out
    strikes: int = 0
    down_until: float = 0.0
    models: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return self.backend.describe()["base_url"]  # type: ignore[no-any-return]

    def as_dict(self) -> dict[str, Any]:
        answered = self.requests - self.failures
        return {
            "base_url": self.url,
            "requests": self.requests,
            "failures": self.failures,
            "mean_latency_s": round(self.seconds / answered, 4) if answered > 0 else None,
        }


class ServerPool(Backend):
    """Requests spread over several servers (see the module)."""

    name = "openai"
    default_concurrency = 16

    def __init__(
        self,
        backends: Sequence[OpenAIBackend],
        *,
        allow_mixed_models: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not backends:
            raise UsageError("no server given")
        self.servers = [Server(b) for b in backends]
        self.allow_mixed_models = allow_mixed_models
        self.clock = clock
        self.width = len(self.servers)
        #: the last passing failure, for the error when every server is down
        self._last: BackendError | None = None
        #: requests in flight per server at most (`--concurrency`)
        self.per_server = self.default_concurrency

    def set_concurrency(self, per_engine: int) -> None:
        self.per_server = max(1, per_engine)

    @property
    def model(self) -> str:
        return self.servers[0].backend.model

    async def start(self) -> None:
        """Each server's models; a mix is refused (unless allowed), a silent server is down."""
        for s in self.servers:
            await s.backend.start()
            try:
                page = await s.backend.client.models.list()
                s.models = tuple(m.id for m in page.data or [])
            except (openai.APIConnectionError, openai.InternalServerError):
                s.requests += 1  # no answer: down for now, tried again after its backoff
                self._fail(s)
            except openai.APIError:
                pass  # it answers, but lists no models: nothing to compare
        listed = [s for s in self.servers if s.models]
        if listed and not self.allow_mixed_models:
            first = listed[0]
            for s in listed[1:]:
                if s.models[:1] != first.models[:1]:
                    raise UsageError(
                        f"the servers serve different models: {first.url} {first.models[0]!r}, "
                        f"{s.url} {s.models[0]!r}; give servers of one model, or "
                        "--allow-mixed-models"
                    )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": [s.url for s in self.servers],
            "servers": [s.as_dict() for s in self.servers],
        }

    def capabilities(self) -> Capabilities:
        return self.servers[0].backend.capabilities()

    async def probe(
        self, json_schema: bool = False, retry: RetryPolicy | None = None
    ) -> Capabilities:
        found = await probe_server(
            self._post, "the servers", self.model, json_schema=json_schema, retry=retry
        )
        exact: bool = await self._route(lambda b: b._exact_http().supported(retry))
        return replace(found, continuations=exact, probe_requests=found.probe_requests + 1)

    async def score_continuations(self, request: ContinuationRequest) -> ContinuationScores:
        """Exact scoring over HTTP on the least busy live server."""
        scores: ContinuationScores = await self._route(lambda b: b.score_continuations(request))
        return scores

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        answer: Completion = await self._route(lambda b: b.complete(messages, params))
        return answer

    async def _post(self, body: dict[str, Any]) -> Any:
        return await self._route(lambda b: b._post(body))

    async def _route(self, call: Callable[[OpenAIBackend], Awaitable[Any]]) -> Any:
        """`call` on the live server with the fewest requests in flight; on a passing failure
        the next live server at once; when none is left, the last error (to be retried)."""
        tried: set[int] = set()
        while True:
            server = self._pick(tried)
            if server is None and self._busy(tried):
                await asyncio.sleep(0.01)  # every live server is at its concurrency
                continue
            if server is None:
                raise self._all_down()
            tried.add(id(server))
            server.in_flight += 1
            server.requests += 1
            started = self.clock()
            try:
                answer = await call(server.backend)
            except BackendError as exc:
                if not is_retryable(exc):
                    server.strikes = 0
                    raise
                self._fail(server)
                self._last = exc
                continue
            finally:
                server.in_flight -= 1
            server.seconds += self.clock() - started
            server.strikes, server.down_until = 0, 0.0
            return answer

    def _live(self, tried: set[int]) -> list[Server]:
        now = self.clock()
        return [s for s in self.servers if id(s) not in tried and s.down_until <= now]

    def _pick(self, tried: set[int]) -> Server | None:
        free = [s for s in self._live(tried) if s.in_flight < self.per_server]
        return min(free, key=lambda s: s.in_flight, default=None)

    def _busy(self, tried: set[int]) -> bool:
        return bool(self._live(tried))

    def _fail(self, server: Server) -> None:
        server.failures += 1
        server.strikes += 1
        wait = min(BACKOFF_CAP, BACKOFF_START * 2.0 ** (server.strikes - 1))
        server.down_until = self.clock() + wait

    def _all_down(self) -> BackendError:
        why = f": {self._last}" if self._last is not None else ""
        return BackendError(f"every server is down{why}", transient=True)

    async def aclose(self) -> None:
        for s in self.servers:
            await s.backend.aclose()
