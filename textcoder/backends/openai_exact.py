"""Exact scoring over HTTP: log P(label | rendered prompt) from a server's prompt logprobs.

Exactly the token sequence local `exact` scores: the prompt rendered by the server's own chat
template and tokenizer (vLLM's `POST /tokenize` with `messages`, which `textcoder serve` also
offers), then each label variant's tokens (`/tokenize` with `add_special_tokens: false`, once
per variant and run). Token ids, not text, go back to the server: the prompt's and the label's
tokens stay as scored even where BPE would merge across the boundary, and no tokenizer or
template is needed here (the template in `/v1/models` metadata, where a server gives one,
would need a Jinja renderer and the tokenizer on the client, and any difference from the
server's own rendering would silently score another sequence).

All of a text's variants go in one `POST /v1/completions` (`prompt` as a list of token-id
lists, `echo`, `max_tokens` 0, vLLM's `prompt_logprobs` 0), and each variant's score is the
sum of its label tokens' logprobs. Servers without prompt logprobs (OpenAI, llama.cpp's
server) answer 404 or 400: a `RequestError` saying which scoring methods work there.
"""

from __future__ import annotations

from typing import Any, Protocol

from .._exceptions import BackendError, RequestError
from ..retry import RetryPolicy, is_retryable, with_retries
from .base import ContinuationRequest, ContinuationScores, Message

WORKS_THERE = "logprobs, text or sample"


class HTTPBackend(Protocol):
    """What exact scoring needs of the OpenAI-compatible backend: its model, its root URL
    and its POST (connection pool, errors as the chat path's)."""

    _root: str

    @property
    def model(self) -> str: ...

    async def _post(self, body: dict[str, Any], url: str | None = None) -> Any: ...


class ExactOverHTTP:
    """Scores continuations on one OpenAI-compatible server (its session and model)."""

    def __init__(self, backend: HTTPBackend) -> None:
        self.backend = backend
        root = backend._root
        self.tokenize_url = root.removesuffix("/v1") + "/tokenize"
        self.completions_url = root + "/completions"
        self._labels: dict[str, list[int]] = {}

    async def supported(self, retry: RetryPolicy | None = None) -> bool:
        """Whether the server scores continuations: one small exact request (retried as
        coding requests are); a refusal or any answer of the wrong shape means no."""
        probe = ContinuationRequest(
            [{"role": "user", "content": "Is the sky blue?"}], ("yes", " no"), n_prefix=0
        )
        try:
            await with_retries(lambda: self.score(probe), retry or RetryPolicy())
        except BackendError as exc:
            if is_retryable(exc):
                raise  # the server is down, not lacking the route
            return False
        return True

    async def score(self, request: ContinuationRequest) -> ContinuationScores:
        """log P(continuation | messages rendered with the generation prompt), each (the
        server caches what it can of the prompt: `n_prefix` and `head` are not needed)."""
        messages: list[Message] = list(request.messages)
        prompt = await self._tokenize({"messages": messages, "add_generation_prompt": True})
        conts = [await self.label_tokens(c) for c in request.continuations]
        if any(not c for c in conts):
            raise RequestError("a continuation to score is empty")
        body = {
            "model": self.backend.model,
            "prompt": [prompt + c for c in conts],
            "max_tokens": 0,
            "echo": True,
            "prompt_logprobs": 0,
            "temperature": 0,
        }
        data = await self._post(self.completions_url, body)
        try:
            choices = sorted(data["choices"], key=lambda c: c["index"])
            scores = tuple(
                _label_logprob(ch, len(prompt), c) for ch, c in zip(choices, conts, strict=True)
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RequestError(
                f"{self.completions_url}: the answer has no prompt logprobs for every label "
                f"({type(exc).__name__}: {exc}); scoring methods that work there: {WORKS_THERE}"
            ) from None
        return ContinuationScores(
            scores, prompt_tokens=len(prompt), model=str(data.get("model") or self.backend.model),
            system_fingerprint=data.get("system_fingerprint"),
        )  # fmt: skip

    async def label_tokens(self, text: str) -> list[int]:
        """A continuation's tokens as they follow the prompt: no BOS (cached per run)."""
        if text not in self._labels:
            self._labels[text] = await self._tokenize({"prompt": text, "add_special_tokens": False})
        return self._labels[text]

    async def _tokenize(self, fields: dict[str, Any]) -> list[int]:
        data = await self._post(self.tokenize_url, {"model": self.backend.model, **fields})
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise BackendError(f"{self.tokenize_url}: the answer has no token ids: {data!r:.200}")
        return tokens

    async def _post(self, url: str, body: dict[str, Any]) -> Any:
        """POST through the backend; a route the server lacks or refuses says what works."""
        try:
            return await self.backend._post(body, url)
        except RequestError as exc:
            raise RequestError(_cannot(url, str(exc))) from None
        except BackendError as exc:
            if exc.status in (404, 405, 422, 501):
                raise RequestError(_cannot(url, str(exc))) from None
            raise


def _cannot(url: str, why: str) -> str:
    return (
        f"{url} cannot score labels exactly ({why}); the server must return prompt logprobs "
        f"(vLLM, textcoder serve); scoring methods that work there: {WORKS_THERE}"
    )


def _label_logprob(choice: dict[str, Any], start: int, label: list[int]) -> float:
    """The sum of the label tokens' logprobs: vLLM's `prompt_logprobs` (by token id), else the
    legacy `logprobs.token_logprobs` of the echoed prompt."""
    entries = choice.get("prompt_logprobs")
    if entries is not None:
        return sum(float(entries[start + i][str(tok)]["logprob"]) for i, tok in enumerate(label))
    lps = choice["logprobs"]["token_logprobs"]
    return sum(float(lps[start + i]) for i in range(len(label)))
