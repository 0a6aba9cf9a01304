"""Several OpenAI-compatible servers as one backend: each request goes to the live server
with the fewest requests in flight, and a failed request goes to the next server at once.

Ejection follows proven load balancers (Envoy's outlier detection): failures are counted per
request attempt in the order the attempts started, so the requests in flight when a server
dies count as one outage, not as many; `EJECT_AFTER` failures in a row eject a server for a
base time that doubles with each ejection (to `EJECT_CAP`); a server's own `Retry-After` is its
cool-down. An ejected server is probed early, with one request at a time, every
`PROBE_EVERY` seconds, and is back the moment a probe is answered. No request fails while a
server it has not tried may still answer: it waits (on an event, not a polling loop) for a
free slot or the next probe, and a server it failed on that has answered another request
since is open to it once more (a server that came back, while the others are full).

The servers must serve the same model (checked with `GET /v1/models` at start); a server
that does not answer then is down, not a mix: the run starts on the others.
"""

from __future__ import annotations

import asyncio
import contextlib
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

#: failures in a row (by attempt start) that eject a server
EJECT_AFTER = 5
#: seconds of the first ejection; doubled with each ejection since the server was last well
EJECT_BASE, EJECT_CAP = 1.0, 30.0
#: seconds between probes of an ejected server (one request each)
PROBE_EVERY = 1.0


@dataclass
class Server:
    """One server of the pool, its health, and what it did."""

    backend: OpenAIBackend
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    #: requests it answered (a count, not a time: a request that failed here may come back
    #: once the server has answered another since)
    answered: int = 0
    seconds: float = 0.0
    #: failed attempts in a row, counted only for attempts started since `since`
    consecutive: int = 0
    #: when the server was last ejected or restored: older attempts belong to that past
    since: float = float("-inf")
    #: ejections since the server was last well (sets the ejection time), and how many in all
    ejections: int = 0
    ejected_total: int = 0
    #: ejected until then (0: live); not probed before `next_probe`; a probe in flight
    down_until: float = 0.0
    next_probe: float = 0.0
    probing: bool = False
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
            "ejections": self.ejected_total,
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
        #: the running loop's event set whenever a request ends (see `_wait`)
        self._changed: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

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
                s.requests += 1  # no answer: down for now, probed again soon
                s.failures += 1
                self._eject(s, self.clock())
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
        self,
        json_schema: bool = False,
        retry: RetryPolicy | None = None,
        continuations: bool = False,
    ) -> Capabilities:
        found = await probe_server(
            self._post, "the servers", self.model, json_schema=json_schema, retry=retry
        )
        if not continuations:
            return found
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
        """`call` on a server (see the module); a passing failure goes to the next server at
        once; the last error (to be retried) only when every server has failed this request."""
        tried: dict[int, int] = {}  # server -> its answer count when this request failed there
        again: set[int] = set()  # servers this request went back to (once each)
        while True:
            now = self.clock()
            server = self._pick(tried, again, now)
            if server is None:
                waiting = [s for s in self.servers if id(s) not in tried]
                if not waiting:
                    raise self._all_down()
                await self._wait(waiting, now)
                continue
            if id(server) in tried:
                again.add(id(server))
            probe = server.down_until > now
            server.probing = server.probing or probe
            server.in_flight += 1
            server.requests += 1
            try:
                answer = await call(server.backend)
            except BackendError as exc:
                if not is_retryable(exc):
                    self._settle(server, probe, now, ok=True)  # the request's fault
                    raise
                self._last = exc
                tried[id(server)] = server.answered
                self._settle(server, probe, now, ok=False, retry_after=exc.retry_after)
                continue
            except BaseException:
                self._settle(server, probe, now, ok=None)
                raise
            server.seconds += self.clock() - now
            self._settle(server, probe, now, ok=True)
            return answer

    def _pick(self, tried: dict[int, int], again: set[int], now: float) -> Server | None:
        """An ejected server due a probe (one request), else the live server with a free slot
        and the fewest requests in flight; None when there is none right now. A server this
        request failed on is open to it once more after answering another request since (it
        came back while this request waited for a slot elsewhere)."""
        fresh = [
            s
            for s in self.servers
            if id(s) not in tried or (id(s) not in again and s.answered > tried[id(s)])
        ]
        for s in fresh:
            if s.down_until > now and not s.probing and s.next_probe <= now:
                return s
        free = [s for s in fresh if s.down_until <= now and s.in_flight < self.per_server]
        return min(free, key=lambda s: s.in_flight, default=None)

    def _settle(
        self,
        server: Server,
        probe: bool,
        started: float,
        ok: bool | None,
        retry_after: float | None = None,
    ) -> None:
        """Count an attempt's outcome (None: cancelled, no outcome) and wake the waiters."""
        server.in_flight -= 1
        if probe:
            server.probing = False
        now = self.clock()
        if ok:
            server.answered += 1
            server.consecutive = 0
            if server.down_until > now or server.ejections:
                server.down_until, server.ejections, server.since = 0.0, 0, now
        elif ok is False:
            server.failures += 1
            if retry_after is not None:  # the server's own cool-down
                server.down_until = max(server.down_until, now + retry_after)
                server.next_probe = max(server.next_probe, server.down_until)
            if started >= server.since:  # attempts started before belong to a past outage
                server.consecutive += 1
                if probe or server.consecutive >= EJECT_AFTER:
                    self._eject(server, now)
        self._pulse()

    def _eject(self, server: Server, now: float) -> None:
        """Take a server out of the rotation for a base time that doubles with each ejection."""
        server.ejections += 1
        server.ejected_total += 1
        wait = min(EJECT_CAP, EJECT_BASE * 2.0 ** (server.ejections - 1))
        server.down_until = max(server.down_until, now + wait)
        server.next_probe = max(server.next_probe, now + PROBE_EVERY)
        server.consecutive, server.since = 0, now

    async def _wait(self, waiting: list[Server], now: float) -> None:
        """Until a request ends (a slot frees, a probe is answered) or the next server may be
        probed or comes back, whichever is first."""
        due = [s.next_probe for s in waiting if s.down_until > now and not s.probing]
        due += [s.down_until for s in waiting if s.down_until > now]
        timeout = min([PROBE_EVERY, *(max(0.0, d - now) for d in due)])
        event = self._event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.001))

    def _event(self) -> asyncio.Event:
        """The event of the running loop that the next finished request sets."""
        loop = asyncio.get_running_loop()
        if self._changed is None or self._changed[0] is not loop:
            self._changed = (loop, asyncio.Event())
        return self._changed[1]

    def _pulse(self) -> None:
        """Wake every waiter; later waiters wait on a new event."""
        if self._changed is not None:
            loop, event = self._changed
            self._changed = (loop, asyncio.Event())
            event.set()

    def _all_down(self) -> BackendError:
        why = f": {self._last}" if self._last is not None else ""
        return BackendError(f"every server is down{why}", transient=True)

    async def aclose(self) -> None:
        for s in self.servers:
            await s.backend.aclose()
