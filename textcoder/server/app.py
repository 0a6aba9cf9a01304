"""The FastAPI app: OpenAI's Chat Completions and Models routes over local engines.

Requests are validated on the event loop, then run one at a time on each engine, in worker
threads (one per engine; a FIFO queue: many clients are all served, none gets an error), so
the loop stays free to accept, stream and notice disconnects. Several engines (copies of the
same model, `--parallel`) answer several requests at once, each exactly as one engine would. Every response body is built as plain
JSON and validated against the `openai` package's own types before it is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._exceptions import RequestError
from ..backends.llama_generate import (
    Cancelled,
    Delta,
    Event,
    Finished,
    GrammarError,
    PromptCache,
    SamplingParams,
    TokenOut,
    check_grammar,
    generate_choices,
)
from ..backends.local import LocalEngine
from .errors import APIError, bad_request
from .schemas import ChatRequest, parse_request, template_messages
from .structured import response_format_grammar

#: default limit on a request body: far more text than any local model's context holds
DEFAULT_MAX_BODY = 4 * 1024 * 1024


@dataclass
class ServerConfig:
    """What `textcoder serve` was started with."""

    served_names: Sequence[str]
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: CPU threads shared by the engines: each busy one gets threads // busy (None: fixed)
    threads: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Prepared:
    """A validated request, ready for the engine."""

    req: ChatRequest
    prompt: list[int]
    params: SamplingParams
    n: int
    logprobs: bool


def create_app(engines: LocalEngine | Sequence[LocalEngine], config: ServerConfig) -> FastAPI:
    """The app serving `engines` (copies of one model) under the ids in `config.served_names`."""
    pool_list = [engines] if isinstance(engines, LocalEngine) else list(engines)
    engine = pool_list[0]  # tokenizer, template and limits: the same in every copy
    app = FastAPI(title="textcoder serve", docs_url=None, redoc_url=None, openapi_url=None)
    worker = ThreadPoolExecutor(max_workers=len(pool_list), thread_name_prefix="textcoder-engine")
    names = list(config.served_names)
    busy = [0]
    busy_lock = threading.Lock()

    def share() -> int:
        return max(1, (config.threads or 1) // max(1, busy[0]))

    pool: queue.LifoQueue[PromptCache] = queue.LifoQueue()
    for e in reversed(pool_list):
        pool.put(PromptCache(e, share if config.threads else None))
    try:
        created = int(os.path.getmtime(engine.info.path))
    except OSError:
        created = config.created

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        msg = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return APIError(exc.status_code, msg, code=code).response()

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        return APIError(500, f"internal error: {exc}", type="server_error").response()

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            raise APIError(
                401,
                "You didn't provide an API key: send it as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), config.api_key.encode()
        ):
            raise APIError(401, "Incorrect API key provided", code="invalid_api_key")

    def model_card(name: str) -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "textcoder"}
        Model.model_validate(card)
        return card

    def unknown_model(name: str) -> APIError:
        return APIError(
            404,
            f"The model {name!r} does not exist; this server serves {', '.join(names)}",
            param="model",
            code="model_not_found",
        )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": names}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_card(n) for n in names]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        if model_id not in names:
            raise unknown_model(model_id)
        return model_card(model_id)

    async def read_body(request: Request) -> bytes:
        limit = config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def prepare(req: ChatRequest) -> Prepared:
        if req.model not in names:
            raise unknown_model(req.model)
        messages = template_messages(req)
        try:
            text = engine.render(messages)
        except Exception as exc:  # a template's raise_exception(): the messages do not fit it
            raise bad_request(
                f"the model's chat template refused the messages: {exc}", "messages"
            ) from None
        prompt = engine.tokenize(text)
        n_ctx = engine.n_ctx
        asked = req.max_completion_tokens or req.max_tokens
        if len(prompt) >= n_ctx or (asked is not None and len(prompt) + asked > n_ctx):
            detail = (
                f"your messages resulted in {len(prompt)} tokens"
                if asked is None
                else f"you requested {len(prompt) + asked} tokens ({len(prompt)} in the "
                f"messages, {asked} in the completion)"
            )
            raise bad_request(
                f"This model's maximum context length is {n_ctx} tokens. However, {detail}. "
                "Please reduce the length of the messages or completion.",
                "messages",
                code="context_length_exceeded",
            )
        gbnf, _schema = response_format_grammar(req.response_format)
        if gbnf is not None:
            try:
                check_grammar(engine, gbnf)
            except GrammarError:
                raise bad_request(
                    "llama.cpp cannot enforce this response_format",
                    "response_format",
                    code="unsupported_schema",
                ) from None
        bias: dict[int, float] = {}
        for key, value in (req.logit_bias or {}).items():
            param = f"logit_bias.{key}"
            if not key.strip().lstrip("-").isdigit() or not 0 <= int(key) < engine.n_vocab:
                raise bad_request(
                    f"logit_bias key {key!r} is not a token id of this model (0..{engine.n_vocab - 1})",
                    param,
                )
            if not -100 <= value <= 100:
                raise bad_request(
                    f"logit_bias value {value} for {key!r} is not in -100..100", param
                )
            bias[int(key)] = float(value)
        params = SamplingParams(
            max_tokens=asked if asked is not None else n_ctx - len(prompt),
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=(req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ()),
            logit_bias=bias,
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            top_logprobs=(req.top_logprobs or 0) if req.logprobs else 0,
            grammar=gbnf,
        )
        return Prepared(req, prompt, params, req.n or 1, bool(req.logprobs))

    def run(p: Prepared, emit: Any, cancel: threading.Event | None = None) -> int:
        try:
            cache = pool.get()  # the most recently used engine first: it likely holds the prefix
            with busy_lock:
                busy[0] += 1
            try:
                return generate_choices(cache, p.prompt, p.params, p.n, p.req.seed, emit, cancel)
            finally:
                with busy_lock:
                    busy[0] -= 1
                pool.put(cache)
        except RequestError as exc:
            raise bad_request(str(exc), "messages") from None

    def usage(p: Prepared, completion: int, cached: int) -> dict[str, Any]:
        return {
            "prompt_tokens": len(p.prompt),
            "completion_tokens": completion,
            "total_tokens": len(p.prompt) + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        authorize(request)
        req = parse_request(await read_body(request))
        p = prepare(req)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(
                stream(p, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        events: list[Event] = []
        cached = await asyncio.get_running_loop().run_in_executor(worker, run, p, events.append)
        texts = [""] * p.n
        toks: list[list[TokenOut]] = [[] for _ in range(p.n)]
        finish = ["length"] * p.n
        completion = 0
        for ev in events:
            if isinstance(ev, Delta):
                texts[ev.index] += ev.text
                toks[ev.index].extend(ev.tokens)
            else:
                finish[ev.index] = ev.finish_reason
                completion += ev.completion_tokens
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "system_fingerprint": engine.fingerprint,
            "service_tier": "default",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": texts[i], "refusal": None},
                    "logprobs": _logprobs(toks[i]) if p.logprobs else None,
                    "finish_reason": finish[i],
                }
                for i in range(p.n)
            ],
            "usage": usage(p, completion, cached),
        }
        ChatCompletion.model_validate(body)
        return JSONResponse(body)

    async def stream(p: Prepared, include_usage: bool) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                emit(("done", run(p, emit, cancel)))
            except Cancelled:
                emit(("cancelled", None))
            except APIError as exc:
                emit(("error", exc))
            except Exception as exc:
                emit(("error", APIError(500, f"generation failed: {exc}", type="server_error")))

        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": p.req.model,
            "system_fingerprint": engine.fingerprint,
            "service_tier": "default",
        }
        if include_usage:
            head["usage"] = None

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            body = {**head, "choices": choices, **extra}
            ChatCompletionChunk.model_validate(body)
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        future = loop.run_in_executor(worker, work)
        completion = 0
        try:
            for i in range(p.n):
                yield chunk(
                    [{"index": i, "delta": {"role": "assistant", "content": ""},
                      "logprobs": None, "finish_reason": None}]
                )  # fmt: skip
            while True:
                ev = await queue.get()
                if isinstance(ev, Delta):
                    yield chunk(
                        [{"index": ev.index, "delta": {"content": ev.text},
                          "logprobs": _logprobs(list(ev.tokens)) if p.logprobs else None,
                          "finish_reason": None}]
                    )  # fmt: skip
                elif isinstance(ev, Finished):
                    completion += ev.completion_tokens
                    yield chunk(
                        [{"index": ev.index, "delta": {}, "logprobs": None,
                          "finish_reason": ev.finish_reason}]
                    )  # fmt: skip
                elif ev[0] == "done":
                    if include_usage:
                        yield chunk([], usage=usage(p, completion, ev[1]))
                    break
                elif ev[0] == "error":
                    yield f"data: {json.dumps(ev[1].body())}\n\n"
                    break
                else:
                    break
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # a client that went away frees the engine at the next token
            del future

    app.state.worker = worker
    return app


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than the server's limit of {limit} bytes "
        "(textcoder serve --max-request-bytes)",
        code="request_too_large",
    )


def _logprobs(tokens: list[TokenOut]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": t.piece.decode("utf-8", errors="replace"),
                "logprob": t.logprob,
                "bytes": list(t.piece),
                "top_logprobs": [
                    {
                        "token": piece.decode("utf-8", errors="replace"),
                        "logprob": lp,
                        "bytes": list(piece),
                    }
                    for _, piece, lp in t.top
                ],
            }
            for t in tokens
        ],
        "refusal": None,
    }
