"""`POST /v1/chat/completions`: the request through `prepare` and `generate_choices` (the same
path as `LocalBackend.complete`), the answer as OpenAI's JSON or server-sent events."""

from __future__ import annotations

import dataclasses
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
    Finished,
    PromptCache,
    TokenOut,
    fold,
    generate_choices,
)
from ..backends.llama.request import ChatParams, Prepared, prepare
from .errors import bad_request
from .http import DisconnectWatch, authorize, check_model, read_body
from .schemas import parse_request, template_messages
from .state import ServerState
from .streaming import SSE_HEADERS, Done, Emit, emitted, framed, sse
from .tools import ToolDeltas, ToolPlan, answer_message, tool_plan, with_tools_note


async def chat_completions(request: Request, state: ServerState) -> Response:
    """Answer one chat request; a client that hangs up frees its engine at the next token."""
    authorize(request, state.config.api_key)
    req = parse_request(await read_body(request, state.config.max_body_bytes))
    check_model(req.model, state.names)
    plan = tool_plan(req.model_extra or {})
    p = prepare_chat(state, req.model_dump(), template_messages(req), plan)
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": state.engine.fingerprint,
        "service_tier": "default",
    }
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = framed(stream_chat(state, p, head, include_usage, plan))
        return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
    got: list[Event] = []
    try:
        async with DisconnectWatch(request) as cancel:
            cached = await state.pool.run(_generate(p, got.append), cancel)
    except Cancelled:
        return Response(status_code=499)  # nobody is there to read it
    outs = fold(got, p.n)
    choices = []
    for i, c in enumerate(outs):
        message, finish = answer_message(c.text, c.finish_reason, plan)
        choices.append({"index": i, "message": message, "finish_reason": finish,
                        "logprobs": logprobs_json(c.tokens) if p.logprobs else None})  # fmt: skip
    completion = sum(c.completion_tokens for c in outs)
    body = {**head, "object": "chat.completion", "choices": choices,
            "usage": usage(len(p.prompt), completion, cached)}  # fmt: skip
    ChatCompletion.model_validate(body)
    return JSONResponse(body)


def prepare_chat(state: ServerState, fields: dict[str, Any], messages: list[dict[str, Any]],
                 plan: ToolPlan | None) -> Prepared:  # fmt: skip
    """`prepare` with the tools: shown in the system message, their grammar on the answer."""
    params = ChatParams.from_fields(fields)
    if plan is not None:
        fmt = params.response_format
        if not plan.required and isinstance(fmt, dict) and fmt.get("type") != "text":
            raise bad_request("response_format other than text cannot be combined with "
                              "tools the model may choose not to call", "response_format")  # fmt: skip
        params = dataclasses.replace(params, grammar=plan.grammar())
    return prepare(state.engine, with_tools_note(messages, plan), params)


def _generate(p: Prepared, emit: Any) -> Any:
    def job(cache: PromptCache, cancel: threading.Event) -> int:
        return generate_choices(cache, p.prompt, p.sampling, p.n, p.seed, emit, cancel)

    return job


async def stream_chat(
    state: ServerState,
    p: Prepared,
    head: dict[str, Any],
    include_usage: bool,
    plan: ToolPlan | None,
) -> AsyncIterator[str]:
    """The answer as chunks (text, or tool-call deltas when `plan` lets the model call)."""

    def job(cache: PromptCache, cancel: threading.Event, emit: Emit) -> int:
        return int(_generate(p, emit)(cache, cancel))

    head = {**head, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}
    readers = [ToolDeltas() for _ in range(p.n)] if plan is not None else None
    completion = 0
    if readers is None:
        for i in range(p.n):
            yield _chunk(head, [_choice(i, {"role": "assistant", "content": ""})])
    async for ev in emitted(state, job):
        if isinstance(ev, Done):
            if include_usage:
                yield _chunk(head, [], usage=usage(len(p.prompt), completion, ev.result))
            break
        if isinstance(ev, Finished):
            completion += ev.completion_tokens
        if readers is None:
            yield _text_chunk(head, ev, p.logprobs)
        else:
            for chunk in _tool_chunks(head, ev, readers[ev.index], p.logprobs):
                yield chunk


def _text_chunk(head: dict[str, Any], ev: Event, logprobs: bool) -> str:
    if isinstance(ev, Delta):
        lp = logprobs_json(list(ev.tokens)) if logprobs else None
        return _chunk(head, [_choice(ev.index, {"content": ev.text}, lp)])
    return _chunk(head, [_choice(ev.index, {}, None, ev.finish_reason)])


def _tool_chunks(head: dict[str, Any], ev: Event, reader: ToolDeltas, logprobs: bool
                 ) -> list[str]:  # fmt: skip
    """A choice's event as chunks when it may call tools (the finish as `tool_calls` when
    it called)."""
    delta = reader.delta(ev.text if isinstance(ev, Delta) else "", isinstance(ev, Finished))
    lp = logprobs_json(list(ev.tokens)) if isinstance(ev, Delta) and logprobs else None
    out = []
    if delta is not None or lp is not None:
        out.append(_chunk(head, [_choice(ev.index, delta or {}, lp)]))
    if isinstance(ev, Finished):
        out.append(_chunk(head, [_choice(ev.index, {}, None,
                                         reader.finish_reason(ev.finish_reason))]))  # fmt: skip
    return out


def _choice(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None
            ) -> dict[str, Any]:  # fmt: skip
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _chunk(head: dict[str, Any], choices: list[dict[str, Any]], **extra: Any) -> str:
    body = {**head, "choices": choices, **extra}
    ChatCompletionChunk.model_validate(body)
    return sse(body)


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
