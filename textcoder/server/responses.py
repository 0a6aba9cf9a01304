"""`POST /v1/responses`: the core of OpenAI's Responses API over the same generation path as
Chat Completions (input items and instructions as chat messages, `text.format` as
`response_format`, tools as chat tools), answered whole or as typed server-sent events."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..backends.llama.generate import Delta, Finished, PromptCache, generate_choices
from ..backends.llama.grammar import InvalidRequest
from ..backends.llama.request import Prepared
from .chat import prepare_chat
from .errors import APIError
from .http import DisconnectWatch, authorize, check_model, read_body
from .responses_input import (
    LOGPROBS,
    ResponsesRequest,
    input_messages,
    parse_responses_request,
    response_format,
)
from .responses_output import ResponseBuilder
from .state import ServerState
from .streaming import SSE_HEADERS, Done, Emit, emitted, sse
from .tools import tool_plan


async def responses(request: Request, state: ServerState) -> Response:
    """Answer one Responses request."""
    authorize(request, state.config.api_key)
    req = parse_responses_request(await read_body(request, state.config.max_body_bytes))
    check_model(req.model, state.names)
    extra = req.model_extra or {}
    plan = tool_plan(extra, flat=True)
    logprobs = req.top_logprobs is not None or LOGPROBS in (req.include or [])
    fields = {
        "max_tokens": req.max_output_tokens, "temperature": req.temperature,
        "top_p": req.top_p, "logprobs": logprobs, "top_logprobs": req.top_logprobs,
        "response_format": response_format(req), "seed": extra.get("seed"),
    }  # fmt: skip
    try:
        p = prepare_chat(state, fields, input_messages(req), plan)
    except InvalidRequest as exc:  # name the Responses field, not Chat Completions'
        param = (exc.param or "").replace("response_format.json_schema", "text.format")
        raise APIError(400, str(exc), param=param.replace("response_format", "text.format"),
                       code=exc.code) from None  # fmt: skip
    builder = ResponseBuilder(_base(req, state), plan is not None, logprobs)
    events = _events(state, p, builder)
    if req.stream:
        return StreamingResponse(_framed(events), media_type="text/event-stream",
                                 headers=SSE_HEADERS)  # fmt: skip
    async with DisconnectWatch(request) as gone:
        async for _ in events:  # the same steps as a stream, the events dropped
            if gone.is_set():  # nobody is there to read it: free the engine
                await events.aclose()
                return Response(status_code=499)
    return JSONResponse(builder.response())


def _base(req: ResponsesRequest, state: ServerState) -> dict[str, Any]:
    """The response's fields that echo the request."""
    extra = req.model_extra or {}
    fmt = (req.text or {}).get("format") or {"type": "text"}
    return {
        "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": time.time(),
        "model": req.model, "error": None, "incomplete_details": None,
        "instructions": req.instructions, "metadata": req.metadata or {},
        "parallel_tool_calls": extra.get("parallel_tool_calls", True) is not False,
        "tool_choice": extra.get("tool_choice") or "auto", "tools": extra.get("tools") or [],
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "max_output_tokens": req.max_output_tokens, "top_logprobs": req.top_logprobs,
        "previous_response_id": None, "store": False, "background": False,
        "text": {"format": fmt}, "truncation": "disabled", "service_tier": "default",
    }  # fmt: skip


async def _events(state: ServerState, p: Prepared, builder: ResponseBuilder
                  ) -> AsyncGenerator[dict[str, Any], None]:  # fmt: skip
    def job(cache: PromptCache, cancel: threading.Event, emit: Emit) -> int:
        return generate_choices(cache, p.prompt, p.sampling, 1, p.seed, emit, cancel)

    for ev in builder.start():
        yield ev
    finish, produced = "stop", 0
    async for item in emitted(state, job):
        if isinstance(item, Done):
            usage = {
                "input_tokens": len(p.prompt), "output_tokens": produced,
                "total_tokens": len(p.prompt) + produced,
                "input_tokens_details": {"cached_tokens": item.result,
                                         "cache_write_tokens": len(p.prompt) - item.result},
                "output_tokens_details": {"reasoning_tokens": 0},
            }  # fmt: skip
            for ev in builder.finish(finish, usage):
                yield ev
            break
        if isinstance(item, Finished):
            finish, produced = item.finish_reason, item.completion_tokens
        if isinstance(item, Delta | Finished):
            for ev in builder.add(item):
                yield ev


async def _framed(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """Each event with its `event:` name; an error after the start as an `error` event."""
    try:
        async for ev in events:
            yield sse(ev, ev["type"])
    except APIError as error:
        yield sse({"type": "error", "sequence_number": 0, **error.body()["error"]}, "error")
