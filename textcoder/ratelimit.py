"""Requests-per-minute and tokens-per-minute caps, as token buckets.

A request takes one unit from the request bucket and its estimated tokens from the token
bucket before it is sent; when the answer's `usage` arrives the token bucket is corrected by
the difference, so estimates that run low are paid back by later requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

#: how many seconds' worth of a cap may be spent at once after a quiet spell
BURST_SECONDS = 5.0


class TokenBucket:
    """Refills at `per_minute / 60` units a second up to `capacity`; may run into debt."""

    def __init__(
        self,
        per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate * BURST_SECONDS)
        self.clock = clock
        self.level = self.capacity
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 if now).

        An amount larger than the bucket can hold waits for a full bucket and then leaves it
        in debt, so one large request is slowed down, never refused.
        """
        self._refill()
        need = min(amount, self.capacity)
        if self.level >= need:
            return 0.0
        return (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        """Take `amount` now (the level may go below zero)."""
        self._refill()
        self.level -= amount

    def give(self, amount: float) -> None:
        """Put back `amount` (negative: take more), e.g. when `usage` corrects an estimate."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """The `--rpm` and `--tpm` caps of one run; either may be None (no cap)."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.requests = TokenBucket(rpm, clock=clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock=clock) if tpm else None
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of about `tokens` tokens fits under both caps, then take it.

        Waiters are served in arrival order (one lock), so a large request is not starved.
        """
        async with self._lock:
            while True:
                wait = max(
                    self.requests.wait_for(1) if self.requests else 0.0,
                    self.tokens.wait_for(tokens) if self.tokens else 0.0,
                )
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def correct(self, estimated: int, actual: int) -> None:
        """The answer's `usage` said `actual` tokens where `estimated` were taken."""
        if self.tokens and actual > 0:
            self.tokens.give(estimated - actual)


def estimate_tokens(messages: Sequence[Any], max_tokens: int) -> int:
    """A quick upper-leaning guess of a request's tokens: ~4 characters a token, plus the answer."""
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // 4 + 4 * len(messages) + 3 + max_tokens
