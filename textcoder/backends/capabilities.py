"""Learning what an OpenAI-compatible server honours before a run: logprobs, top_logprobs, n,
json_schema. Servers differ (see the Chat Completions reference); guessing wrong loses rows."""

from __future__ import annotations

from typing import Any

import openai

from .base import Backend, Capabilities

PROBE_MESSAGES = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]


async def probe(client: openai.AsyncOpenAI, model: str, json_schema: bool = False) -> Capabilities:
    """One small request asking for logprobs, top_logprobs=2 and n=2 (and one for json_schema)."""
    base: dict[str, Any] = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": 2}
    try:
        resp = await client.chat.completions.create(
            **base, logprobs=True, top_logprobs=2, n=2, temperature=1.0, seed=0
        )
        choice = resp.choices[0] if resp.choices else None
        content = choice.logprobs.content if choice and choice.logprobs else None
        has_lp = bool(content)
        has_top = bool(content) and all(len(t.top_logprobs or []) >= 2 for t in content or [])
        has_n = len(resp.choices) == 2
    except openai.BadRequestError:
        has_lp = has_top = False
        try:
            resp = await client.chat.completions.create(**base, n=2, temperature=1.0, seed=0)
            has_n = len(resp.choices) == 2
        except openai.BadRequestError:
            has_n = False
    schema_ok: bool | None = None
    if json_schema:
        schema_ok = await _probe_json_schema(client, base)
    return Capabilities(has_lp, has_top, has_n, schema_ok)


async def _probe_json_schema(client: openai.AsyncOpenAI, base: dict[str, Any]) -> bool:
    import json

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    try:
        resp = await client.chat.completions.create(
            **{**base, "max_tokens": 20},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "probe", "schema": schema, "strict": True},
            },
        )
    except openai.BadRequestError:
        return False
    try:
        data = json.loads(resp.choices[0].message.content or "")
    except (json.JSONDecodeError, IndexError):
        return False
    return isinstance(data, dict) and data.get("answer") in ("yes", "no")


async def probe_server(backend: Backend, json_schema: bool = False) -> Capabilities:
    """Probe an OpenAI-compatible backend's server (see `probe`)."""
    client = getattr(backend, "client", None)
    if not isinstance(client, openai.AsyncOpenAI):
        return backend.capabilities()
    try:
        return await probe(client, backend.model, json_schema=json_schema)
    except openai.APIError as exc:
        from .._exceptions import BackendError

        raise BackendError(f"cannot probe {client.base_url}: {exc}") from exc
