"""The online executor: a unit's requests sent now, through rate limits and retries."""

from __future__ import annotations

from collections.abc import Sequence

from ..backends.base import Answer, Backend, ChatRequest, Completion, Request
from ..ratelimit import RateLimiter, estimate_tokens
from ..retry import RetryPolicy, with_retries
from .stats import RunStats, Usage


class OnlineExecutor:
    """Sends requests to one backend and returns the answers with their usage."""

    def __init__(
        self,
        backend: Backend,
        stats: RunStats,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.backend = backend
        self.stats = stats
        self.retry = retry if retry is not None else RetryPolicy()
        self.limiter = limiter if limiter is not None and limiter.active else None
        fingerprint = backend.describe().get("system_fingerprint")
        #: the engine's fingerprint where it is known up front (the local engine's)
        self._fingerprint = str(fingerprint) if fingerprint else None

    async def answer(self, requests: Sequence[Request]) -> tuple[list[Answer], Usage]:
        """Every request's answer, in order (one after the other: they are one row's), and
        what they cost together. A failure raises; no partial answers are returned."""
        answers: list[Answer] = []
        usage = Usage()
        for request in requests:
            answer = await self._send(request)
            answers.append(answer)
            one = self._usage(answer)
            self.stats.count(one)
            usage.add(one)
        return answers, usage

    async def _send(self, request: Request) -> Answer:
        """One request through the rate limits, retried as the policy allows."""
        estimate = 0
        if self.limiter is not None and isinstance(request, ChatRequest):
            estimate = estimate_tokens(request.messages, request.params.max_tokens)
            await self.limiter.acquire(estimate)

        retried = False

        def count_retry(exc: BaseException, wait: float) -> None:
            nonlocal retried
            self.stats.retries += 1
            if not retried:
                retried = True
                self.stats.retrying += 1

        try:
            answer = await with_retries(
                lambda: self.backend.answer(request), self.retry, count_retry
            )
        finally:
            if retried:
                self.stats.retrying -= 1
        if self.limiter is not None and isinstance(answer, Completion):
            self.limiter.correct(estimate, answer.prompt_tokens + answer.completion_tokens)
        return answer

    def _usage(self, answer: Answer) -> Usage:
        if isinstance(answer, Completion):
            return Usage(
                answer.model,
                answer.system_fingerprint,
                answer.prompt_tokens,
                answer.completion_tokens,
            )
        return Usage(
            answer.model or self.backend.model,
            answer.system_fingerprint or self._fingerprint,
            answer.prompt_tokens,
            0,
        )
