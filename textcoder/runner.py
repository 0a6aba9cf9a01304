"""Coding many texts: bounded concurrency, one result per text in input order, run statistics."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

from ._exceptions import RequestError, TextcoderError, UsageError
from .backends.base import Backend, Completion, CompletionParams
from .codebook import Codebook, Variable
from .progress import Progress
from .prompt import (
    NO,
    YES,
    Message,
    build_messages,
    joint_messages,
    joint_schema,
    multi_label_messages,
    prefix_messages,
)
from .ratelimit import RateLimiter, estimate_tokens
from .results import CodeResult
from .retry import RetryPolicy, with_retries
from .scoring import INVALID, VariableResult, score_completion
from .scoring.exact import ContinuationScorer, exact_result, variants_for
from .scoring.joint import joint_result
from .scoring.result import with_fallback
from .scoring.sample import vote_shares
from .store import Store, request_hash

T = TypeVar("T")

#: the yes/no scheme each category of a multi-label variable is asked as
YES_NO = Variable.model_validate({"name": "answer", "categories": [YES, NO]})

EMPTY_TEXT = "empty text: nothing to code"
#: stands in for a row's text while the store key's JSON is split around it
_PLACEHOLDER = "textcoder-key-placeholder-6b1f0d"
NOT_CODED = "not coded: the run stopped before this row's answer arrived"
#: seconds that requests in flight may take to finish after SIGINT/SIGTERM before they are dropped
STOP_GRACE = 5.0

#: what the last answer in this task reported: (model, fingerprint, prompt and completion tokens)
_usage: contextvars.ContextVar[tuple[str, str | None, int, int] | None] = contextvars.ContextVar(
    "textcoder_usage", default=None
)


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run; every answer received before is in the store."""

    def __init__(self, signame: str, stored: int) -> None:
        super().__init__(f"{signame}: stopped with {stored} answers stored")
        self.signame = signame
        self.stored = stored


@dataclass
class RunStats:
    """What a run did, for the manifest and the closing summary."""

    rows: int = 0
    requests: int = 0
    reused: int = 0
    retries: int = 0
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
            "answers_reused": self.reused,
            "retries": self.retries,
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
        *,
        store: Store | None = None,
        fresh: bool = False,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        threshold: float = 0.5,
        split_n: bool = False,
        joint: bool = False,
    ) -> None:
        self.codebook = codebook
        self.backend = backend
        self.scoring = scoring
        self.params = params
        self.concurrency = max(1, concurrency)
        self.stats = RunStats()
        self.store = store if store is not None else Store(":memory:")
        self.fresh = fresh
        self.retry = retry if retry is not None else RetryPolicy()
        self.limiter = limiter if limiter is not None and limiter.active else None
        self._key_base = {
            "backend": backend.name,
            "model": backend.model,
            "parameters": params.as_dict(),
            "scoring": scoring,
            "mode": getattr(codebook, "mode", None),
        }
        self._var_specs = {v.name: v.model_dump(mode="json") for v in codebook.variables}
        self._prefixes: dict[str, list[Message]] = {}
        self._key_parts: dict[str, tuple[Any, list[bytes]] | tuple[()]] = {}
        self.interrupted: str | None = None
        #: multi-label: a category is chosen when its probability is at least this
        self.threshold = threshold
        #: `mode: joint` codebooks ask for all variables in one JSON answer while this holds
        self.joint = joint
        #: the backend ignores `n`: sample with n requests instead of one
        self.split_n = split_n
        self.notes: list[str] = []
        self._progress: Progress | None = None
        fingerprint = backend.describe().get("system_fingerprint")
        #: the engine's fingerprint where it is known up front (the local engine's)
        self._fingerprint = str(fingerprint) if fingerprint else None

    def note(self, message: str) -> None:
        """Say something once per run (on the progress line or stderr), and keep it for the manifest."""
        if message in self.notes:
            return
        self.notes.append(message)
        if self._progress is not None:
            self._progress.note(f"textcoder: {message}")

    def messages(self, text: str, variable: Variable) -> list[Message]:
        """The request's messages for one text (the variable's prefix built once per run)."""
        prefix = self._prefixes.get(variable.name)
        if prefix is None:
            prefix = self._prefixes[variable.name] = prefix_messages(self.codebook, variable)
        return build_messages(self.codebook, text, variable, prefix)

    def request_payload(self, text: str, variable: Variable) -> dict[str, Any]:
        """What the store key hashes: backend, model, messages, parameters, scoring, variable."""
        messages = self.messages(text, variable)
        return {**self._key_base, "variable": self._var_specs[variable.name], "messages": messages}

    def request_key(self, text: str, variable: Variable) -> str:
        """The store key of one request: `request_hash(request_payload(text, variable))`.

        Only the text changes between rows, so the payload's JSON around it is serialised and
        hashed once per variable and each key hashes on from there (the same digest).
        """
        parts = self._key_parts.get(variable.name)
        if parts is None:
            parts = self._key_parts[variable.name] = self._split_payload(variable)
        if not parts:
            return request_hash(self.request_payload(text, variable))
        start, rest = parts
        h = start.copy()
        escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
        for part in rest:
            h.update(escaped)
            h.update(part)
        return str(h.hexdigest())

    def _split_payload(self, variable: Variable) -> tuple[Any, list[bytes]] | tuple[()]:
        """The payload's JSON split where the text goes, its head already hashed; () where the
        split is not clean (then every key is hashed whole)."""
        payload = json.dumps(
            self.request_payload(_PLACEHOLDER, variable),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        pieces = payload.split(_PLACEHOLDER.encode())
        if len(pieces) != self.codebook.template.count("{text}") + 1:
            return ()
        return hashlib.sha256(pieces[0]), pieces[1:]

    async def _send(
        self, messages: Sequence[Message], params: CompletionParams | None = None
    ) -> Completion:
        """One request through the rate limits, retried as the policy allows."""
        params = params or self.params
        estimate = 0
        if self.limiter is not None:
            estimate = estimate_tokens(messages, params.max_tokens)
            await self.limiter.acquire(estimate)

        def count_retry(exc: BaseException, wait: float) -> None:
            self.stats.retries += 1

        completion = await with_retries(
            lambda: self.backend.complete(messages, params), self.retry, count_retry
        )
        if self.limiter is not None:
            self.limiter.correct(estimate, completion.prompt_tokens + completion.completion_tokens)
        self._record(
            completion.model,
            completion.system_fingerprint,
            completion.prompt_tokens,
            completion.completion_tokens,
        )
        return completion

    def _record(
        self, model: str, fingerprint: str | None, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Count one request in the run's statistics and in this variable's stored usage."""
        prev = _usage.get()
        pt, ct = (prev[2], prev[3]) if prev is not None else (0, 0)
        _usage.set((model, fingerprint, pt + prompt_tokens, ct + completion_tokens))
        self.stats.requests += 1
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        if model:
            self.stats.models.add(model)
        if fingerprint:
            self.stats.fingerprints.add(fingerprint)

    async def _answers(self, messages: Sequence[Message], params: CompletionParams) -> list[str]:
        """`params.n` answers: one request where the backend honours `n`, else n requests."""
        if params.n <= 1 or not self.split_n:
            completion = await self._send(messages, params)
            return list(completion.choices or (completion.text,))
        out: list[str] = []
        for i in range(params.n):
            seed = None if params.seed is None else params.seed + i
            one = await self._send(messages, replace(params, n=1, seed=seed))
            out.append(one.text)
        return out

    async def code_variable(self, text: str, variable: Variable) -> VariableResult:
        """Code one variable of one text; a failure becomes the result's error, never a raise."""
        if not text.strip():
            return empty_result(variable)
        if variable.multi:
            return await self._code_multi(text, variable)
        messages = self.messages(text, variable)
        return with_fallback(await self._score(messages, variable))

    async def _score(self, messages: list[Message], variable: Variable) -> VariableResult:
        """One variable's distribution from one prompt, by the run's scoring method."""
        if self.scoring == "exact":
            return await self._code_exact(messages, variable)
        try:
            if self.scoring == "sample":
                return vote_shares(await self._answers(messages, self.params), variable)
            completion = await self._send(messages)
        except TextcoderError as exc:
            return failed_result(variable, str(exc))
        return score_completion(completion, variable, self.scoring)

    async def _code_multi(self, text: str, variable: Variable) -> VariableResult:
        """A multi-label variable: one yes/no question per category, each its own probability."""
        probs: dict[str, float] = {}
        raws: list[str] = []
        for label in variable.labels:
            messages = multi_label_messages(self.codebook, variable, label, text)
            r = await self._score(messages, YES_NO)
            if r.error:
                return failed_result(variable, f"{label}: {r.error}")
            yes, no = r.probs[YES], r.probs[NO]
            probs[label] = yes / (yes + no) if yes + no > 0 else 0.0
            raws.append(f"{label}: {r.raw}")
        chosen = [lab for lab in variable.labels if probs[lab] >= self.threshold]
        return VariableResult(
            label=";".join(chosen),
            probs=probs,
            other=0.0,
            raw="; ".join(raws),
            extra={"multi": True},
        )

    async def code_joint(self, text: str) -> dict[str, VariableResult]:
        """Every variable in one request answered as JSON (`mode: joint`)."""
        variables = self.codebook.variables
        schema = {"name": "codes", "schema": joint_schema(self.codebook), "strict": True}
        params = replace(
            self.params,
            logprobs=False,
            max_tokens=max(self.params.max_tokens, 64 * len(variables)),
            extra={
                **self.params.extra,
                "response_format": {"type": "json_schema", "json_schema": schema},
            },
        )
        try:
            answers = await self._answers(joint_messages(self.codebook, text), params)
        except RequestError as exc:
            self.joint = False
            self.note(
                f"the server refused a json_schema request ({exc}); coding each variable "
                "in its own request instead"
            )
            return {v.name: await self.code_variable(text, v) for v in variables}
        except TextcoderError as exc:
            return {v.name: failed_result(v, str(exc)) for v in variables}
        return {v.name: joint_result(answers, v) for v in variables}

    async def _code_exact(self, messages: list[Message], variable: Variable) -> VariableResult:
        """Scoring `exact`: every label variant scored after the prompt (its prefix cached)."""
        if not isinstance(self.backend, ContinuationScorer):
            raise UsageError(f"scoring 'exact' needs the local engine, not {self.backend.name!r}")
        variants = variants_for(variable)
        try:
            scored = await self.backend.score_continuations(
                messages,
                [v for _, v in variants],
                n_prefix=len(messages) - 1,
                head=self.codebook.template.split("{text}", 1)[0],
            )
        except TextcoderError as exc:
            return failed_result(variable, str(exc))
        self._record(self.backend.model, self._fingerprint, scored.prompt_tokens, 0)
        return exact_result(variable, variants, scored.logprobs)

    async def code_text(self, text: str) -> CodeResult:
        """Code every variable of one text."""
        if self.joint and text.strip():
            return CodeResult(await self.code_joint(text))
        out = {v.name: await self.code_variable(text, v) for v in self.codebook.variables}
        return CodeResult(out)

    async def code_row(self, row_id: str, text: str) -> CodeResult:
        """Code each variable of one row that the store lacks, storing each answer at once;
        the row's results (stored ones reused). A failed variable's error is stored, so a
        rerun retries it."""
        out: dict[str, VariableResult] = {}
        joint: dict[str, VariableResult] | None = None
        for var in self.codebook.variables:
            key = self.request_key(text, var)
            if not self.fresh:
                stored = self.store.get(key, row_id)
                if stored is not None and stored.ok:
                    self.stats.reused += 1
                    out[var.name] = stored.result
                    continue
            _usage.set(None)
            if self.joint and joint is None:
                joint = await self.code_joint(text)
            result = joint[var.name] if joint is not None else await self.code_variable(text, var)
            usage = _usage.get()
            model, fingerprint, pt, ct = usage if usage is not None else (None, None, 0, 0)
            # synchronous: no await between the answer and its commit, so a cancelled
            # or killed run never leaves half an answer
            self.store.put(
                key,
                row_id,
                var.name,
                result,
                ok=result.error is None,
                model=model,
                system_fingerprint=fingerprint,
                prompt_tokens=pt,
                completion_tokens=ct,
            )
            out[var.name] = result
        return CodeResult(out)

    async def run_items(
        self,
        items: Iterable[tuple[str, str]],
        progress: Progress | None = None,
        handle_signals: bool = False,
        on_row: Callable[[int, CodeResult], None] | None = None,
    ) -> None:
        """Send every (row id, text) the store lacks, `concurrency` rows at a time.

        `items` is consumed lazily, so a generator over a large file keeps memory flat.
        `on_row(index, result)` gets each row's results as the row is done (any order).
        With `handle_signals`, SIGINT/SIGTERM stop taking rows, give requests in flight
        `STOP_GRACE` seconds (a second signal: none), then raise `RunInterrupted`.
        """
        started = time.perf_counter()
        source: Iterator[tuple[int, tuple[str, str]]] = enumerate(items)
        empty = CodeResult({v.name: empty_result(v) for v in self.codebook.variables})
        prog = progress if progress is not None else Progress(None, self.stats, mode="off")
        self._progress = prog

        async def worker() -> None:
            while self.interrupted is None:
                item = next(source, None)  # never awaits, so workers can share the iterator
                if item is None:
                    return
                index, (row_id, text) = item
                if not text.strip():
                    self.stats.empty += 1
                    result = empty
                else:
                    result = await self.code_row(row_id, text)
                    if any(r.error is not None for r in result.values()):
                        self.stats.failed += 1
                self.stats.rows += 1
                prog.tick()
                if on_row is not None:
                    on_row(index, result)

        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(worker()) for _ in range(self.concurrency)]

        def cancel_all() -> None:
            for t in tasks:
                t.cancel()

        def on_signal(name: str) -> None:
            if self.interrupted is None:
                self.interrupted = name
                prog.note(f"{name}: finishing the requests in flight (again to stop at once)")
                loop.call_later(STOP_GRACE, cancel_all)
            else:
                cancel_all()

        installed: list[signal.Signals] = []
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, on_signal, sig.name)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here: Ctrl-C still works
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
            for sig in installed:
                loop.remove_signal_handler(sig)
            prog.close()
            self.stats.seconds += time.perf_counter() - started
            self.stats.ended = _now()
        if self.interrupted is not None:
            raise RunInterrupted(self.interrupted, self.store.counts()["ok"])

    def results_for(self, rows: Sequence[tuple[str, str]]) -> list[CodeResult]:
        """The coded results of (row id, text) pairs, read from the store, in the given order."""
        variables = self.codebook.variables
        keys = [
            [(self.request_key(text, v), row_id) for v in variables] if text.strip() else None
            for row_id, text in rows
        ]
        found = self.store.get_many(k for ks in keys if ks for k in ks)
        out: list[CodeResult] = []
        for ks in keys:
            if ks is None:
                out.append(CodeResult({v.name: empty_result(v) for v in variables}))
                continue
            res: dict[str, VariableResult] = {}
            for v, k in zip(variables, ks, strict=True):
                stored = found.get(k)
                res[v.name] = stored.result if stored is not None else failed_result(v, NOT_CODED)
            out.append(CodeResult(res))
        return out

    async def run(
        self,
        texts: Sequence[str],
        progress: bool = True,
        ids: Sequence[str] | None = None,
    ) -> list[CodeResult]:
        """Code every text; results come back in input order whatever order answers arrive in.

        `ids` name the rows in the store (default: the row numbers, from 1).
        """
        row_ids = (
            [str(i) for i in ids] if ids is not None else [str(i + 1) for i in range(len(texts))]
        )
        rows = list(zip(row_ids, texts, strict=True))
        prog = Progress(len(rows), self.stats, mode="auto" if progress else "off")
        out: list[CodeResult | None] = [None] * len(rows)

        def keep(index: int, result: CodeResult) -> None:
            out[index] = result

        await self.run_items(rows, prog, on_row=keep)
        return [
            r if r is not None else self.results_for([row])[0]
            for r, row in zip(out, rows, strict=True)
        ]


_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, kept across calls: HTTP clients' pooled connections belong to
    one loop, so a Coder used call after call keeps its connections (and closes them cleanly)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = new_event_loop()
        _local.loop = loop
    return loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """asyncio's event loop (uvloop was measured slower with aiohttp here: bench/runner_overhead.py)."""
    return asyncio.new_event_loop()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also inside Jupyter's running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run_until_complete(_as_coro(make))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            loop = new_event_loop()
            try:
                box["value"] = loop.run_until_complete(_as_coro(make))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
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
