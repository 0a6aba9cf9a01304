"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, `textcoder serve`) via `openai`."""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from .._exceptions import BackendError, RequestError, UsageError
from ..prompt import Message
from .base import Backend, Completion, CompletionParams, TokenLogprob

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"


class OpenAIBackend(Backend):
    """Chat Completions over HTTP through the official async `openai` client."""

    name = "openai"
    default_scoring = "logprobs"
    default_concurrency = 16

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if key is None:
            if self.base_url is None:
                raise UsageError(
                    "the openai backend needs OPENAI_API_KEY, or --base-url for a local server"
                )
            key = "sk-no-key-required"  # local servers ignore it; the client insists on one
        self._model = model or DEFAULT_OPENAI_MODEL
        #: no model named and a server of our own: ask the server which it serves (`start`)
        self._ask_server = model is None and self.base_url is not None
        self._client_args: dict[str, Any] = {
            "api_key": key,
            "base_url": self.base_url,
            "timeout": timeout,
            "max_retries": max_retries,
        }
        self._client = openai.AsyncOpenAI(**self._client_args)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The async client of the running event loop: its pooled connections belong to one
        loop, and each `run_sync` call runs a new one."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is not self._loop:
            if self._loop is not None:
                self._client = openai.AsyncOpenAI(**self._client_args)
            self._loop = loop
        return self._client

    @property
    def model(self) -> str:
        return self._model

    async def start(self) -> None:
        """With no model named, use the first model a local server lists (`GET /v1/models`)."""
        if not self._ask_server:
            return
        self._ask_server = False
        try:
            page = await self.client.models.list()
        except openai.APIError:
            return  # the first request will say what is wrong with the server
        if page.data:
            self._model = page.data[0].id

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": str(self.client.base_url)}

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = params.top_logprobs
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.n != 1:
            kwargs["n"] = params.n
        kwargs.update(params.extra)
        try:
            # the body is already plain JSON: skip the client's per-field request transform
            # (a third of the CPU per row at high concurrency), keep its errors and parsing
            resp = await self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
        except openai.BadRequestError as exc:
            raise RequestError(f"the server refused the request (400): {_message(exc)}") from exc
        except openai.APIStatusError as exc:
            raise BackendError(
                f"the server answered {exc.status_code}: {_message(exc)}",
                status=exc.status_code,
                retry_after=retry_after(exc.response.headers),
            ) from exc
        except openai.APITimeoutError as exc:
            raise BackendError(
                f"no answer from {self.client.base_url} within the timeout", transient=True
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach {self.client.base_url}: {exc}", transient=True
            ) from exc
        if not resp.choices:
            raise BackendError("the server answered with no choices")
        choice = resp.choices[0]
        tokens: tuple[TokenLogprob, ...] = ()
        if choice.logprobs is not None and choice.logprobs.content:
            tokens = tuple(
                TokenLogprob(
                    token=t.token,
                    logprob=t.logprob,
                    top=tuple((a.token, a.logprob) for a in (t.top_logprobs or [])),
                )
                for t in choice.logprobs.content
            )
        usage = resp.usage
        return Completion(
            text=choice.message.content or "",
            tokens=tokens,
            model=resp.model,
            system_fingerprint=resp.system_fingerprint,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason,
            choices=tuple(c.message.content or "" for c in resp.choices),
        )

    async def aclose(self) -> None:
        await self.client.close()


def retry_after(headers: Any) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, or `retry-after` (seconds or a date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, ValueError):
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message")
        if msg:
            return str(msg)
    return exc.message
