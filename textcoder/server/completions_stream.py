"""Streamed legacy `POST /v1/completions`: each chunk a `text_completion` object with its
choice's new text and, when asked, the logprobs of just that chunk's tokens (text offsets
count from the start of the choice's text); the echoed prompt comes first;
`stream_options.include_usage` adds a last chunk with no choices and the usage."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse
from openai.types import Completion

from ..backends.llama.generate import Delta, Finished, PromptCache, generate_choices
from ..backends.llama.request import Prepared
from .chat import usage
from .legacy_logprobs import Row, echo_row, echo_text, legacy_logprobs, scorer, token_row
from .schemas import CompletionRequest
from .state import ServerState
from .streaming import SSE_HEADERS, Done, Emit, emitted, framed, sse


def stream_completions(
    state: ServerState,
    req: CompletionRequest,
    prompts: list[list[int]],
    preps: list[Prepared],
    score_k: int | None,
) -> StreamingResponse:
    """The response streaming `preps` (one per prompt; choice i*n + j is prompt i's j-th);
    `score_k`: score the prompts for an echo with logprobs (top k)."""

    def job(cache: PromptCache, cancel: threading.Event, emit: Emit) -> None:
        if score_k is not None:
            emit(scorer(cache.engine).score_sequences(prompts, score_k))
        for i, p in enumerate(preps):
            if p.sampling.max_tokens:
                generate_choices(cache, p.prompt, p.sampling, p.n, p.seed, _tagged(emit, i), cancel)

    events = _chunks(state, req, prompts, preps, job)
    return StreamingResponse(framed(events), media_type="text/event-stream", headers=SSE_HEADERS)


def _tagged(emit: Emit, i: int) -> Emit:
    return lambda ev: emit((i, ev))


async def _chunks(
    state: ServerState,
    req: CompletionRequest,
    prompts: list[list[int]],
    preps: list[Prepared],
    job: Any,
) -> AsyncIterator[str]:
    engine, n = state.engine, preps[0].n
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    head: dict[str, Any] = {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
        "created": int(time.time()), "model": req.model,
        "system_fingerprint": engine.fingerprint, **({"usage": None} if include_usage else {}),
    }  # fmt: skip
    offsets = [0] * (len(prompts) * n)  # characters sent so far, per choice
    produced = 0

    def chunk(index: int, text: str, rows: list[Row] | None, finish: str | None = None) -> str:
        lp = legacy_logprobs(rows, offsets[index]) if rows is not None else None
        offsets[index] += len(text)
        choice = {"index": index, "text": text, "logprobs": lp, "finish_reason": finish}
        return _send({**head, "choices": [choice]})

    if req.echo and req.logprobs is None:
        for i, toks in enumerate(prompts):
            for j in range(n):
                yield chunk(i * n + j, echo_text(engine, req.prompt, toks), None)
    async for item in emitted(state, job):
        if isinstance(item, Done):
            break
        if isinstance(item, list):  # the prompts' scores: the echo with its logprobs
            for i, (toks, recs) in enumerate(zip(prompts, item, strict=True)):
                rows = [echo_row(engine, engine.piece(t), r, req.logprobs or 0)
                        for t, r in zip(toks, recs, strict=True)]  # fmt: skip
                for j in range(n):
                    yield chunk(i * n + j, echo_text(engine, req.prompt, toks), rows)
            continue
        i, ev = item
        index = i * n + ev.index
        if isinstance(ev, Delta):
            rows = [token_row(t, req.logprobs or 0) for t in ev.tokens]
            yield chunk(index, ev.text, rows if req.logprobs is not None else None)
        elif isinstance(ev, Finished):
            produced += ev.completion_tokens
            yield chunk(index, "", [] if req.logprobs is not None else None, ev.finish_reason)
    if req.max_tokens == 0:
        for index in range(len(prompts) * n):
            yield chunk(index, "", None, "length")
    if include_usage:
        yield _send({**head, "choices": [], "usage": usage(sum(map(len, prompts)), produced, 0)})


def _send(body: dict[str, Any]) -> str:
    """The chunk as an event, checked against the `openai` type; that type requires what a
    stream leaves null (`finish_reason` before the end, the first echoed token's logprobs)."""
    checked = []
    for c in body["choices"]:
        lp = c["logprobs"]
        if lp is not None:
            lp = {**lp, "token_logprobs": [x or 0.0 for x in lp["token_logprobs"]],
                  "top_logprobs": [x or {} for x in lp["top_logprobs"]]}  # fmt: skip
        checked.append({**c, "finish_reason": c["finish_reason"] or "stop", "logprobs": lp})
    Completion.model_validate({**body, "choices": checked})
    return sse(body)
