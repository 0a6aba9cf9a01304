"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, `textcoder serve`) via `openai`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import openai

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
        self.client = openai.AsyncOpenAI(
            api_key=key, base_url=self.base_url, timeout=timeout, max_retries=max_retries
        )

    @property
    def model(self) -> str:
        return self._model

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
            resp = await self.client.chat.completions.create(**kwargs)
        except openai.BadRequestError as exc:
            raise RequestError(f"the server refused the request (400): {_message(exc)}") from exc
        except openai.APIStatusError as exc:
            raise BackendError(f"the server answered {exc.status_code}: {_message(exc)}") from exc
        except openai.APIConnectionError as exc:
            raise BackendError(f"cannot reach {self.client.base_url}: {exc}") from exc
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
        )

    async def aclose(self) -> None:
        await self.client.close()


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message")
        if msg:
            return str(msg)
    return exc.message
