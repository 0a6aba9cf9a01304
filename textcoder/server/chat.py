"""`POST /v1/chat/completions`: the request through `prepare` and `generate_choices` (the same
path as `LocalBackend.complete`), the answer as OpenAI's JSON or server-sent events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ..backends.llama.generate import (
    Cancelled,
    Delta,
    Event,
    PromptCache,
    TokenOut,
    fold,
    generate_choices,
)
from ..backends.llama.request import ChatParams, Prepared, prepare
from .errors import APIError, as_api_error
from .http import DisconnectWatch, authorize, check_model, read_body
from .schemas import parse_request, template_messages
from .state import ServerState

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def chat_completions(request: Request, state: ServerState) -> Response:
    """Answer one chat request; a client that hangs up frees its engine at the next token."""
    authorize(request, state.config.api_key)
    req = parse_request(await read_body(request, state.config.max_body_bytes))
    check_model(req.model, state.names)
    p = prepare(state.engine, template_messages(req), ChatParams.from_fields(req.model_dump()))
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": state.engine.fingerprint,
        "service_tier": "default",
    }
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = stream_chat(state, p, head, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    got: list[Event] = []
    try:
        async with DisconnectWatch(request) as cancel:
            cached = await state.pool.run(_generate(p, got.append), cancel)
    except Cancelled:
        return Response(status_code=499)  # nobody is there to read it
    choices = fold(got, p.n)
    body = {
        **head,
        "object": "chat.completion",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": None},
                "logprobs": logprobs_json(c.tokens) if p.logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(choices)
        ],
        "usage": usage(len(p.prompt), sum(c.completion_tokens for c in choices), cached),
    }
    ChatCompletion.model_validate(body)
    return JSONResponse(body)


def _generate(p: Prepared, emit: Any) -> Any:
    def job(cache: PromptCache, cancel: threading.Event) -> int:
        return generate_choices(cache, p.prompt, p.sampling, p.n, p.seed, emit, cancel)

    return job


async def stream_chat(
    state: ServerState, p: Prepared, head: dict[str, Any], include_usage: bool
) -> AsyncIterator[str]:
    """The answer as chunks, then `data: [DONE]`; an error after the start is an error event."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    cancel = threading.Event()
    task = asyncio.ensure_future(
        state.pool.run(_generate(p, lambda ev: loop.call_soon_threadsafe(queue.put_nowait, ev)),
                       cancel)
    )  # fmt: skip
    task.add_done_callback(lambda _: queue.put_nowait(None))
    head = {**head, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}
    completion = 0
    try:
        for i in range(p.n):
            yield _chunk(head, [_choice(i, {"role": "assistant", "content": ""})])
        while (ev := await queue.get()) is not None:
            if isinstance(ev, Delta):
                lp = logprobs_json(list(ev.tokens)) if p.logprobs else None
                yield _chunk(head, [_choice(ev.index, {"content": ev.text}, lp)])
            else:
                completion += ev.completion_tokens
                yield _chunk(head, [_choice(ev.index, {}, None, ev.finish_reason)])
        error = _task_error(task)
        if error is not None:
            yield f"data: {json.dumps(error.body())}\n\n"
        elif include_usage and not task.cancelled():
            yield _chunk(head, [], usage=usage(len(p.prompt), completion, task.result()))
        yield "data: [DONE]\n\n"
    finally:
        cancel.set()  # a client that went away frees the engine at the next token
        task.add_done_callback(_task_error)


def _task_error(task: asyncio.Future[Any]) -> APIError | None:
    """The error a finished generation ended with, as the client should see it (else None)."""
    exc = None if task.cancelled() else task.exception()
    if exc is None or isinstance(exc, Cancelled):
        return None
    return as_api_error(exc)


def _choice(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None
            ) -> dict[str, Any]:  # fmt: skip
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _chunk(head: dict[str, Any], choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {**head, "choices": choices, **extra}
    ChatCompletionChunk.model_validate(body)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    """OpenAI's usage object, with the prompt tokens that came from the cache."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def logprobs_json(tokens: list[TokenOut]) -> dict[str, Any]:
    """Chat logprobs: each token's text, raw bytes, logprob and its top alternatives."""
    return {
        "content": [
            {
                **_token(t.piece, t.logprob),
                "top_logprobs": [_token(piece, lp) for _, piece, lp in t.top],
            }
            for t in tokens
        ],
        "refusal": None,
    }


def _token(piece: bytes, logprob: float) -> dict[str, Any]:
    return {"token": piece.decode("utf-8", errors="replace"), "logprob": logprob,
            "bytes": list(piece)}  # fmt: skip
