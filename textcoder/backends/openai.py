"""Any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, Ollama, `textcoder serve`) over HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import openai

from .._exceptions import BackendError, RequestError, UsageError
from .._json import from_json, to_json
from .._version import __version__
from ..retry import RetryPolicy
from .base import (
    Backend,
    Capabilities,
    Completion,
    CompletionParams,
    ContinuationRequest,
    ContinuationScores,
    Message,
    TokenLogprob,
)
from .capabilities import probe_server

DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIBackend(Backend):
    """Chat Completions over HTTP: requests posted through aiohttp's connection pool, the
    official async `openai` client for the rest (listing a server's models).

    The hot path skips the `openai` client: at 256 requests in flight its httpx layer and
    response models cost about 1 ms of CPU per request, five times what textcoder itself
    spends, and a run's wall time is bounded by one core. The body sent is the same JSON.
    """

    name = "openai"
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
        self.timeout = timeout
        self._root = (self.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._chat_url = self._root + "/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"textcoder/{_version()}",
        }
        for env, header in (
            ("OPENAI_ORG_ID", "OpenAI-Organization"),
            ("OPENAI_PROJECT_ID", "OpenAI-Project"),
        ):
            if os.environ.get(env):
                self._headers[header] = os.environ[env]
        self._client: openai.AsyncOpenAI | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _for_this_loop(self) -> None:
        """Pooled connections belong to one event loop, and each `run_sync` call runs a new
        one: drop the client and session of another loop."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is not self._loop:
            self._client = None
            self._session = None
            self._loop = loop

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The official async client of the running event loop."""
        self._for_this_loop()
        if self._client is None:
            self._client = openai.AsyncOpenAI(**self._client_args)
        return self._client

    @property
    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (connection pool) of the running event loop."""
        self._for_this_loop()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=_ssl_context()),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self._headers,
            )
            self._proxy = _env_proxy(self._chat_url)
        return self._session

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
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": self._root + "/",
        }

    def capabilities(self) -> Capabilities:
        """What is assumed of a server until it is probed: Chat Completions with logprobs."""
        return Capabilities(logprobs=True, top_logprobs=True, n=True, json_schema=None)

    async def probe(
        self,
        json_schema: bool = False,
        retry: RetryPolicy | None = None,
        continuations: bool = False,
    ) -> Capabilities:
        """Ask the server (see `capabilities.probe`), retried as coding requests are; exact
        scoring's routes only when `continuations` (a default run needs no optional route)."""
        found = await probe_server(
            self._post, self._root, self.model, json_schema=json_schema, retry=retry
        )
        if not continuations:
            return found
        exact = await self._exact_http().supported(retry)  # one more request
        return replace(found, continuations=exact, probe_requests=found.probe_requests + 1)

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        return completion_from_json(await self._post(self.request_body(messages, params)))

    def request_body(self, messages: Sequence[Message], params: CompletionParams) -> dict[str, Any]:
        """The JSON body of one Chat Completions request (the Batch API sends the same)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = params.top_logprobs
        if params.seed is not None:
            body["seed"] = params.seed
        if params.n != 1:
            body["n"] = params.n
        body.update(params.extra)
        return body

    async def _post(self, body: dict[str, Any], url: str | None = None) -> Any:
        """POST a chat completion request (or `body` to another route of the server); the
        answer's JSON, or the error as ours."""
        try:
            session = self.session
            async with session.post(
                url or self._chat_url, data=to_json(body), proxy=self._proxy
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except asyncio.TimeoutError as exc:
            raise BackendError(
                f"no answer from {self._root} within the timeout ({self.timeout:g} s)",
                transient=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"cannot reach {self._root}: {exc}", transient=True) from exc
        if status >= 400:
            message = _error_message(raw)
            if status == 400:
                raise RequestError(f"the server refused the request (400): {message}")
            raise BackendError(
                f"the server answered {status}: {message}",
                status=status,
                retry_after=retry_after(headers),
            )
        try:
            return from_json(raw)
        except ValueError:
            # a proxy's page or a body cut short: a passing fault of this server, not the request's
            raise BackendError(
                f"the server's answer is not JSON: {raw[:200]!r}", status=status, transient=True
            ) from None

    def _exact_http(self) -> Any:
        """Exact scoring over HTTP (vLLM, textcoder serve): see `openai_exact`."""
        from .openai_exact import ExactOverHTTP

        if "_exact" not in self.__dict__:
            self.__dict__["_exact"] = ExactOverHTTP(self)
        return self.__dict__["_exact"]

    async def score_continuations(self, request: ContinuationRequest) -> ContinuationScores:
        scores: ContinuationScores = await self._exact_http().score(request)
        return scores

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        if self._client is not None:
            await self._client.close()


def completion_from_json(data: Any) -> Completion:
    """Our Completion from a Chat Completions answer as JSON (OpenAI's wire format)."""
    try:
        choices = data["choices"]
        if not choices:
            raise BackendError("the server answered with no choices", transient=True)
        choice = choices[0]
        tokens: tuple[TokenLogprob, ...] = ()
        content = (choice.get("logprobs") or {}).get("content")
        if content:
            tokens = tuple(
                TokenLogprob(
                    token=t["token"],
                    logprob=float(t["logprob"]),
                    top=tuple(
                        (a["token"], float(a["logprob"])) for a in t.get("top_logprobs") or ()
                    ),
                )
                for t in content
            )
        usage = data.get("usage") or {}
        return Completion(
            text=(choice.get("message") or {}).get("content") or "",
            tokens=tokens,
            model=str(data.get("model") or ""),
            system_fingerprint=data.get("system_fingerprint"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
            choices=tuple((c.get("message") or {}).get("content") or "" for c in choices),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackendError(
            f"the server's answer is not a chat completion ({type(exc).__name__}: {exc}): "
            f"{str(data)[:200]}",
            transient=True,
        ) from None


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


def _error_message(raw: bytes) -> str:
    """The message of an error answer: OpenAI's `{"error": {"message": ...}}`, else its text."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace").strip()[:500] or "(no message)"
    if isinstance(body, dict):
        err = body.get("error")
        msg = body.get("message") or (err.get("message") if isinstance(err, dict) else err)
        if msg:
            return str(msg)
    return str(body)[:500]


def _env_proxy(url: str) -> str | None:
    """The proxy that HTTP(S)_PROXY and NO_PROXY name for `url`, as the openai client honours
    them; looked up once per session (aiohttp's `trust_env` does it per request, in a thread)."""
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _ssl_context() -> ssl.SSLContext:
    """TLS verified against certifi's CA bundle, as the openai client does (system CAs where
    certifi is missing)."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _version() -> str:
    return __version__
