"""A coding run put together: the plan, the online executor, the row coder and the scheduler.

Each part has one job (see `plan`, `run/online.py`, `run/rows.py`, `run/schedule.py`); the
`Runner` only wires them for one codebook on one backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .asyncsync import new_event_loop, run_sync
from .backends.base import Backend, Capabilities, CompletionParams, Message
from .codebook import Codebook, Variable
from .plan import ChooseExamples, Planner
from .progress import Progress
from .ratelimit import RateLimiter
from .results import CodeResult
from .retry import RetryPolicy
from .run.online import OnlineExecutor
from .run.rows import NOT_CODED, RowCoder, empty_result, empty_row, failed_result
from .run.schedule import STOP_GRACE, RunInterrupted, Scheduler
from .run.stats import RunStats
from .scoring import RequestContext, Scorer, get_scorer
from .store import Store

__all__ = [
    "NOT_CODED",
    "STOP_GRACE",
    "RunInterrupted",
    "RunStats",
    "Runner",
    "empty_result",
    "failed_result",
    "new_event_loop",
    "run_sync",
]


class Runner:
    """Codes texts with one codebook on one backend, `concurrency` rows at a time."""

    def __init__(
        self,
        codebook: Codebook,
        backend: Backend,
        scoring: str | Scorer,
        params: CompletionParams,
        concurrency: int = 1,
        *,
        store: Store | None = None,
        fresh: bool = False,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        threshold: float = 0.5,
        capabilities: Capabilities | None = None,
        joint: bool = False,
        truncate: bool = False,
        grace: float = STOP_GRACE,
        examples: ChooseExamples | None = None,
    ) -> None:
        self.codebook = codebook
        self.stats = RunStats()
        self.store = store if store is not None else Store(":memory:")
        self.notes: list[str] = []
        self._progress: Progress | None = None
        scorer = get_scorer(scoring) if isinstance(scoring, str) else scoring
        caps = capabilities or backend.capabilities()
        head = codebook.template.split("{text}", 1)[0]
        self.planner = Planner(
            codebook,
            scorer,
            params,
            RequestContext(caps, head),
            engine=(backend.name, backend.model),
            threshold=threshold,
            joint=joint,
            examples=examples,
        )
        self.executor = OnlineExecutor(backend, self.stats, retry, limiter)
        self.backend = backend
        self.rows = RowCoder(
            self.planner,
            self.executor,
            self.store,
            self.stats,
            fresh=fresh,
            note=self.note,
            fit=self._fit if truncate else None,
        )
        self._around: list[Message] | None = None
        self.scheduler = Scheduler(
            self.rows.code_row, self.stats, concurrency, lambda: empty_row(codebook), grace
        )

    def note(self, message: str) -> None:
        """Say something once per run (on the progress line), and keep it for the manifest."""
        if message in self.notes:
            return
        self.notes.append(message)
        if self._progress is not None:
            self._progress.note(f"textcoder: {message}")

    def _fit(self, text: str) -> str:
        """`text` cut to fit the context after the longest of the row's prompts."""
        if self._around is None:
            prompts = [r.messages for r in self.planner.all_requests("")]
            self._around = max(prompts, key=lambda m: sum(len(x["content"]) for x in m))
        answer = max(self.planner.params.max_tokens, 16)
        return self.backend.truncate(text, self._around, answer)

    def request_key(self, text: str, variable: Variable) -> str:
        """The store key of one variable's unit for `text`."""
        return self.planner.variable_unit(text, variable).keys[0]

    def request_payload(self, text: str, variable: Variable) -> dict[str, Any]:
        """What that key hashes."""
        return self.planner.payload(text, variable)

    async def code_text(self, text: str) -> CodeResult:
        """Code every variable of one text (nothing stored)."""
        return await self.rows.code_text(text)

    async def run_items(
        self,
        items: Iterable[tuple[str, str]],
        progress: Progress | None = None,
        handle_signals: bool = False,
        on_row: Callable[[int, CodeResult], None] | None = None,
    ) -> None:
        """Send every (row id, text) the store lacks (see `Scheduler.run`); raises
        `RunInterrupted` after a signal, with every answer received before stored."""
        prog = progress if progress is not None else Progress(None, self.stats, mode="off")
        self._progress = prog
        self.rows.lookup = not self.store.is_empty()  # row ids are unique within a run
        try:
            await self.scheduler.run(items, prog, handle_signals, on_row)
        finally:
            self.store.commit()  # the last group: nothing waits on a timer between runs
        if self.scheduler.interrupted is not None:
            raise RunInterrupted(self.scheduler.interrupted, self.store.counts()["ok"])

    async def run(
        self,
        texts: Sequence[str],
        progress: bool = True,
        ids: Sequence[str] | None = None,
        handle_signals: bool = False,
    ) -> list[CodeResult]:
        """Code every text; results in input order (`ids` name the rows in the store,
        default the row numbers from 1); `handle_signals` as `run_items`."""
        row_ids = (
            [str(i) for i in ids] if ids is not None else [str(i + 1) for i in range(len(texts))]
        )
        rows = list(zip(row_ids, texts, strict=True))
        prog = Progress(len(rows), self.stats, mode="auto" if progress else "off")
        out: list[CodeResult | None] = [None] * len(rows)

        def keep(index: int, result: CodeResult) -> None:
            out[index] = result

        await self.run_items(rows, prog, handle_signals, on_row=keep)
        missing = CodeResult({v.name: failed_result(v, NOT_CODED) for v in self.codebook.variables})
        return [r if r is not None else missing for r in out]
