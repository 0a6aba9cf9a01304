"""Coding many texts: bounded concurrency, one result per text in input order, run statistics."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from ._exceptions import TextcoderError
from .backends.base import Backend, CompletionParams
from .codebook import Codebook, Variable
from .prompt import build_messages
from .results import CodeResult
from .scoring import INVALID, VariableResult, score_completion

T = TypeVar("T")

EMPTY_TEXT = "empty text: nothing to code"


@dataclass
class RunStats:
    """What a run did, for the manifest and the closing summary."""

    rows: int = 0
    requests: int = 0
    failed: int = 0
    empty: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    models: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)
    started: str = field(default_factory=lambda: _now())
    ended: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "requests": self.requests,
            "failed_rows": self.failed,
            "empty_texts": self.empty,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "models_answering": sorted(self.models),
            "system_fingerprints": sorted(self.fingerprints),
            "started": self.started,
            "ended": self.ended,
            "seconds": round(self.seconds, 3),
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def failed_result(variable: Variable, error: str, label: str = "") -> VariableResult:
    """A variable that could not be coded: no probabilities, the error kept."""
    nan = float("nan")
    return VariableResult(
        label=label, probs=dict.fromkeys(variable.labels, nan), other=nan, error=error
    )


def empty_result(variable: Variable) -> VariableResult:
    """An empty text is coded `invalid` with all mass on `other`; nothing is sent."""
    return VariableResult(
        label=INVALID, probs=dict.fromkeys(variable.labels, 0.0), other=1.0, error=EMPTY_TEXT
    )


class Runner:
    """Codes texts with one codebook on one backend, `concurrency` requests at a time."""

    def __init__(
        self,
        codebook: Codebook,
        backend: Backend,
        scoring: str,
        params: CompletionParams,
        concurrency: int = 1,
    ) -> None:
        self.codebook = codebook
        self.backend = backend
        self.scoring = scoring
        self.params = params
        self.concurrency = max(1, concurrency)
        self.stats = RunStats()

    async def code_variable(self, text: str, variable: Variable) -> VariableResult:
        """Code one variable of one text; a failure becomes the result's error, never a raise."""
        if not text.strip():
            return empty_result(variable)
        messages = build_messages(self.codebook, text, variable)
        try:
            completion = await self.backend.complete(messages, self.params)
        except TextcoderError as exc:
            return failed_result(variable, str(exc))
        self.stats.requests += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        if completion.model:
            self.stats.models.add(completion.model)
        if completion.system_fingerprint:
            self.stats.fingerprints.add(completion.system_fingerprint)
        return score_completion(completion, variable, self.scoring)

    async def code_text(self, text: str) -> CodeResult:
        """Code every variable of one text."""
        out = {v.name: await self.code_variable(text, v) for v in self.codebook.variables}
        return CodeResult(out)

    async def run(
        self,
        texts: Sequence[str],
        on_result: Callable[[int, CodeResult], None] | None = None,
        progress: bool = True,
    ) -> list[CodeResult]:
        """Code every text; results come back in input order whatever order answers arrive in."""
        started = time.perf_counter()
        results: list[CodeResult | None] = [None] * len(texts)
        bar = _progress_bar(len(texts), progress)
        queue: Iterable[tuple[int, str]] = iter(enumerate(texts))
        lock = asyncio.Lock()

        async def worker() -> None:
            while True:
                async with lock:
                    item = next(queue, None)  # type: ignore[call-overload]
                if item is None:
                    return
                i, text = item
                res = await self.code_text(text)
                results[i] = res
                self.stats.rows += 1
                if not text.strip():
                    self.stats.empty += 1
                elif any(r.error for r in res.values()):
                    self.stats.failed += 1
                if on_result is not None:
                    on_result(i, res)
                if bar is not None:
                    bar.update(1)
                    if self.stats.failed:
                        bar.set_postfix(failed=self.stats.failed, refresh=False)

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(texts)) or 1)))
        finally:
            if bar is not None:
                bar.close()
            self.stats.seconds += time.perf_counter() - started
            self.stats.ended = _now()
        return [r for r in results if r is not None]


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="text", desc="coding", file=sys.stderr, dynamic_ncols=True)


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also inside Jupyter's running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coro(make))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_as_coro(make))
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _as_coro(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
