"""Retrying a request that failed for a passing reason: exponential backoff, jitter, Retry-After.

Retried: HTTP 408, 409, 429 and 5xx, timeouts and dropped connections. Not retried: a 400
(`RequestError`) or any other refusal, which would fail the same way again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ._exceptions import BackendError, RequestError

T = TypeVar("T")

RETRY_STATUSES = frozenset({408, 409, 429})


def is_retryable(exc: BaseException) -> bool:
    """Whether trying the same request again could succeed."""
    if not isinstance(exc, BackendError) or isinstance(exc, RequestError):
        return False
    if exc.transient:
        return True
    return exc.status is not None and (exc.status in RETRY_STATUSES or exc.status >= 500)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: `max_retries` after the first try, waits in seconds."""

    max_retries: int = 6
    base: float = 0.5
    cap: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """The wait before retry number `attempt` (0-based).

        A server's Retry-After is honoured as given (up to `max_retry_after`), with a little
        jitter on top so that many waiting requests do not return at the same instant;
        otherwise the wait doubles each time, capped, with "equal jitter" (half fixed, half random).
        """
        if retry_after is not None:
            wait = min(retry_after, self.max_retry_after)
            return wait + rng.uniform(0, min(1.0, 0.1 * wait))
        ceiling = min(self.cap, self.base * 2.0**attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


#: jitter's source: one generator for the process (seeding one per request cost more than the
#: rest of the retry wrapper)
_RNG = random.Random()


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[BaseException, float], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await `call()`, trying again after a retryable failure until the policy runs out.

    The last error is raised as it was; `on_retry(error, wait)` is told of each retry.
    """
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as exc:
            if not is_retryable(exc):
                raise
            if attempt >= policy.max_retries:
                if attempt:
                    exc.args = (f"{exc} (gave up after {attempt} retries)",)
                raise
            wait = policy.delay(attempt, exc.retry_after, rng or _RNG)
            if on_retry is not None:
                on_retry(exc, wait)
            attempt += 1
            await asyncio.sleep(wait)
