"""Learning what an OpenAI-compatible server honours before a run: logprobs, top_logprobs, n,
json_schema. Servers differ (see the Chat Completions reference); guessing wrong loses rows.
The probe's requests are retried as coding requests are (backoff, Retry-After)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from .._exceptions import BackendError, RequestError
from ..retry import RetryPolicy, with_retries
from .base import Capabilities

PROBE_MESSAGES = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}

Post = Callable[[dict[str, Any]], Awaitable[Any]]


async def probe(
    post: Post, model: str, *, json_schema: bool = False, retry: RetryPolicy | None = None
) -> Capabilities:
    """One small request asking for logprobs, top_logprobs=2 and n=2 (and one for json_schema);
    `post` sends a request body and returns the answer's JSON (or raises `BackendError`)."""
    policy = retry if retry is not None else RetryPolicy()
    base: dict[str, Any] = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": 2}

    sent = 0

    async def ask(body: dict[str, Any]) -> Any:
        nonlocal sent
        sent += 1
        return await with_retries(lambda: post(body), policy)

    extra = {"n": 2, "temperature": 1.0, "seed": 0}
    try:
        data = await ask({**base, **extra, "logprobs": True, "top_logprobs": 2})
        content = [c.get("logprobs", {}) or {} for c in _choices(data)][:1]
        tokens = (content[0].get("content") or []) if content else []
        has_lp = bool(tokens)
        has_top = has_lp and all(len(t.get("top_logprobs") or []) >= 2 for t in tokens)
        has_n = len(_choices(data)) == 2
    except RequestError:
        has_lp = has_top = False
        try:
            has_n = len(_choices(await ask({**base, **extra}))) == 2
        except RequestError:
            has_n = False
    schema_ok = await _probe_json_schema(ask, base) if json_schema else None
    return Capabilities(has_lp, has_top, has_n, schema_ok, probe_requests=sent)


def _choices(data: Any) -> list[dict[str, Any]]:
    choices = data.get("choices") if isinstance(data, dict) else None
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


async def _probe_json_schema(ask: Post, base: dict[str, Any]) -> bool:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "probe", "schema": _SCHEMA, "strict": True},
    }
    try:
        data = await ask({**base, "max_tokens": 20, "response_format": fmt})
    except RequestError:
        return False
    try:
        answer = json.loads(_choices(data)[0]["message"]["content"] or "")
    except (json.JSONDecodeError, IndexError, KeyError, TypeError):
        return False
    return isinstance(answer, dict) and answer.get("answer") in ("yes", "no")


async def probe_server(
    post: Post,
    where: str,
    model: str,
    *,
    json_schema: bool = False,
    retry: RetryPolicy | None = None,
) -> Capabilities:
    """`probe`, with a server that never answers reported as one clear error."""
    try:
        return await probe(post, model, json_schema=json_schema, retry=retry)
    except BackendError as exc:
        raise BackendError(f"cannot probe {where}: {exc}") from exc
