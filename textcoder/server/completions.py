"""Legacy `POST /v1/completions` (OpenAI's `echo` and `logprobs`, vLLM's `prompt_logprobs`,
`prompt` as a list) and vLLM's `POST /tokenize` (a prompt, or chat messages rendered by the
chat template): what exact scoring over HTTP needs from a server.

Prompt logprobs come from `PromptScorer`, which evaluates a request's prompts as local
`exact` evaluates a text's labels, so the two agree; generation after the prompt (max_tokens
> 0) goes through `generate_choices`, as chat does.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ..backends.llama import LocalEngine
from ..backends.llama.echo import Position
from ..backends.llama.generate import Cancelled, ChoiceOut, PromptCache, fold, generate_choices
from ..backends.llama.request import (
    ChatParams,
    Prepared,
    check_context,
    prepare_tokens,
    render_prompt,
)
from .chat import usage
from .completions_stream import stream_completions
from .http import DisconnectWatch, authorize, check_model, read_body
from .legacy_logprobs import echo_row, echo_text, legacy_logprobs, piece_text, scorer, token_row
from .schemas import (
    CompletionRequest,
    parse_completion_request,
    parse_tokenize_request,
    template_messages,
)
from .state import ServerState


async def completions(request: Request, state: ServerState) -> Response:
    """Score the prompts (echo, prompt_logprobs) and/or continue them (max_tokens > 0)."""
    authorize(request, state.config.api_key)
    req = parse_completion_request(await read_body(request, state.config.max_body_bytes))
    check_model(req.model, state.names)
    engine = state.engine
    prompts = prompt_tokens(engine, req.prompt)
    fields = {**req.model_dump(), "logprobs": req.logprobs is not None}
    params = ChatParams.from_fields({**fields, "top_logprobs": req.logprobs or 0})
    preps = [prepare_tokens(engine, p, params) for p in prompts]
    k = max(req.logprobs or 0, req.prompt_logprobs or 0)
    score = req.prompt_logprobs is not None or (bool(req.echo) and req.logprobs is not None)
    if req.stream:
        return stream_completions(state, req, prompts, preps, k if score else None)

    def job(cache: PromptCache, cancel: threading.Event) -> Any:
        scored = scorer(cache.engine).score_sequences(prompts, k) if score else None
        return scored, [_continue(cache, p, cancel) for p in preps]

    try:
        async with DisconnectWatch(request) as cancel:
            scored, outs = await state.pool.run(job, cancel)
    except Cancelled:
        return Response(status_code=499)
    choices = []
    memo: dict[int, Any] = {}  # the prompts' shared positions are the same records
    for i, (toks, per_prompt) in enumerate(zip(prompts, outs, strict=True)):
        records = scored[i] if scored is not None else None
        for j, out in enumerate(per_prompt):
            index = i * len(per_prompt) + j
            choices.append(_choice(engine, req, index, toks, records, out, memo))
    n_prompt = sum(map(len, prompts))
    n_out = sum(o.completion_tokens for per in outs for o in per if o is not None)
    body = {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": engine.fingerprint,
        "choices": choices,
        "usage": usage(n_prompt, n_out, 0),
    }
    return JSONResponse(body)


def prompt_tokens(engine: LocalEngine, prompt: Any) -> list[list[int]]:
    """Every prompt of a request as token ids (strings tokenized as the model's tokenizer
    does, with its BOS where it adds one)."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    out: list[list[int]] = []
    for p in prompt:
        toks = engine.tokenize(p) if isinstance(p, str) else list(p)
        if not toks:
            from .errors import bad_request

            raise bad_request("a prompt is empty", "prompt")
        if any(not 0 <= t < engine.n_vocab for t in toks):
            from .errors import bad_request

            raise bad_request(f"a prompt token id is not in 0..{engine.n_vocab - 1}", "prompt")
        out.append(toks)
    return out


def _continue(cache: PromptCache, p: Prepared, cancel: threading.Event) -> list[ChoiceOut | None]:
    """The request's `n` continuations of one prompt (None each where max_tokens is 0)."""
    if p.sampling.max_tokens == 0:
        return [None] * p.n
    events: list[Any] = []
    generate_choices(cache, p.prompt, p.sampling, p.n, p.seed, events.append, cancel)
    return list(fold(events, p.n))


def _choice(
    engine: LocalEngine,
    req: CompletionRequest,
    index: int,
    prompt: list[int],
    records: list[Position | None] | None,
    out: ChoiceOut | None,
    memo: dict[int, Any],
) -> dict[str, Any]:
    pieces = [engine.piece(t) for t in prompt]
    text = echo_text(engine, req.prompt, prompt) if req.echo else ""
    choice: dict[str, Any] = {
        "index": index,
        "text": text + (out.text if out else ""),
        "logprobs": None,
        "finish_reason": out.finish_reason if out else "length",
    }
    if req.logprobs is not None:
        rows: list[tuple[bytes, float | None, dict[str, float] | None]] = []
        if req.echo and records is not None:
            rows += [
                echo_row(engine, p, r, req.logprobs) for p, r in zip(pieces, records, strict=True)
            ]
        rows += [token_row(t, req.logprobs) for t in (out.tokens if out else [])]
        choice["logprobs"] = legacy_logprobs(rows)
    if req.prompt_logprobs is not None and records is not None:
        choice["prompt_logprobs"] = [
            memo[id(r)] if id(r) in memo else memo.setdefault(id(r), _vllm_position(engine, r))
            for r in records
        ]
    return choice


def _vllm_position(engine: LocalEngine, rec: Position | None) -> dict[str, Any] | None:
    """vLLM's prompt_logprobs entry: {token id: {logprob, rank, decoded_token}}, the prompt's
    own token and the top k."""
    if rec is None:
        return None
    entry = {str(i): {"logprob": lp, "rank": r + 1, "decoded_token": piece_text(engine.piece(i))}
             for r, (i, lp) in enumerate(rec.top)}  # fmt: skip
    entry[str(rec.token)] = {
        "logprob": rec.logprob, "rank": rec.rank, "decoded_token": piece_text(engine.piece(rec.token))
    }  # fmt: skip
    return entry


async def tokenize(request: Request, state: ServerState) -> Response:
    """vLLM's /tokenize: `messages` are rendered by the chat template and tokenized exactly as
    /v1/chat/completions evaluates them (`add_special_tokens` unset: as the model adds them)."""
    authorize(request, state.config.api_key)
    req = parse_tokenize_request(await read_body(request, state.config.max_body_bytes))
    if req.model is not None:
        check_model(req.model, state.names)
    engine = state.engine
    if req.messages is not None:
        messages = template_messages(req)
        if req.add_generation_prompt:
            tokens = render_prompt(engine, messages)
            if req.add_special_tokens is not None:
                tokens = engine.tokenize(engine.render(messages), bos=req.add_special_tokens)
        else:
            fmt = engine.chat_formatter(add_generation_prompt=False)
            text = str(fmt(messages=messages).prompt)
            tokens = engine.tokenize(text, bos=req.add_special_tokens)
    else:
        bos = True if req.add_special_tokens is None else req.add_special_tokens
        tokens = engine.tokenize(req.prompt or "", bos=bos)
    check_context(engine, len(tokens), None)
    body = {"count": len(tokens), "max_model_len": engine.n_ctx, "tokens": tokens,
            "token_strs": None}  # fmt: skip
    return JSONResponse(body)
