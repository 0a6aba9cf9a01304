"""`LocalBackend`: the embedded llama.cpp engine behind the `Backend` interface.

Generation goes through the same path as `textcoder serve` (one translation of the request's
fields, `generate_choices`, one fold of its events), so answers and logprobs equal the
server's; exact scoring through `ExactScorer`, with the codebook's prefix kept in a KV cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..._exceptions import BackendError
from ...models import resolve_model
from ..base import (
    Backend,
    Capabilities,
    Completion,
    CompletionParams,
    ContinuationRequest,
    Message,
    TokenLogprob,
)
from ..base import ContinuationScores as Scores
from .engine import LocalEngine
from .exact import ContinuationScores, ExactScorer
from .generate import Event, PromptCache, TokenOut, fold, generate_choices
from .request import ChatParams, prepare
from .selfcheck import checked_scorer


class LocalBackend(Backend):
    """The embedded engine: a GGUF model run by llama.cpp in this process."""

    name = "local"
    default_concurrency = 1

    def __init__(
        self, model: str | None = None, n_ctx: int | None = None, n_threads: int | None = None
    ) -> None:
        self.info = resolve_model(model)
        self.engine = LocalEngine(self.info, n_ctx=n_ctx, n_threads=n_threads)
        #: evaluates prompts after the cached prefix, the same way cold or warm
        self.prompts = PromptCache(self.engine)
        #: made now: its start-up check refuses a llama-cpp-python that would score wrongly
        self._exact: ExactScorer | None = checked_scorer(self.engine)

    @property
    def model(self) -> str:
        return self.info.name

    def capabilities(self) -> Capabilities:
        """Logprobs, top_logprobs, n choices, json_schema (by grammar) and continuation
        scoring (with a cached prefix): all honoured."""
        return Capabilities(
            logprobs=True,
            top_logprobs=True,
            n=True,
            json_schema=True,
            continuations=True,
            prefix_cache=True,
        )

    def truncate(self, text: str, around: Sequence[Message], answer_tokens: int) -> str:
        """Keep the text's first tokens that fit the context after the rest of the prompt."""
        engine = self.engine
        overhead = len(engine.tokenize(engine.render(around)))
        room = max(1, engine.n_ctx - overhead - answer_tokens - 16)  # 16: label tokens
        tokens = engine.tokenize(text, bos=False)
        if len(tokens) <= room:
            return text
        return b"".join(engine.piece(t) for t in tokens[:room]).decode("utf-8", errors="ignore")

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "model_path": str(self.info.path),
            "model_source": self.info.source,
            "system_fingerprint": self.engine.fingerprint,
            "n_ctx": self.engine.n_ctx,
            **({"exact": self._exact.stats.as_dict()} if self._exact is not None else {}),
        }

    def exact_scorer(self) -> ExactScorer:
        """The engine's prefix-caching scorer, made on first use (it adds llama.cpp contexts)."""
        with self.engine.lock:
            if self._exact is None:
                self._exact = ExactScorer(self.engine)
            return self._exact

    def score_continuations_sync(
        self,
        messages: Sequence[Message],
        continuations: Sequence[str],
        n_prefix: int,
        head: str = "",
    ) -> ContinuationScores:
        """log P(continuation | prompt) for each continuation; `messages[:n_prefix]` and the
        last message's opening `head` are cached."""
        try:
            return self.exact_scorer().score(messages, continuations, n_prefix, head)
        except (RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc

    async def score_continuations(self, request: ContinuationRequest) -> Scores:
        scored = await asyncio.to_thread(
            self.score_continuations_sync,
            request.messages,
            request.continuations,
            request.n_prefix,
            request.head,
        )
        return Scores(
            tuple(scored.logprobs), scored.prompt_tokens, self.model, self.engine.fingerprint
        )

    def complete_sync(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        """Answer one chat request in this thread, as `textcoder serve` answers it."""
        p = prepare(self.engine, messages, ChatParams.from_fields(wire_fields(params)))
        events: list[Event] = []
        try:
            generate_choices(self.prompts, p.prompt, p.sampling, p.n, p.seed, events.append)
        except (RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        choices = fold(events, p.n)
        first = choices[0]
        return Completion(
            text=first.text,
            tokens=tuple(map(token_logprob, first.tokens)) if p.logprobs else (),
            model=self.model,
            system_fingerprint=self.engine.fingerprint,
            prompt_tokens=len(p.prompt),
            completion_tokens=sum(c.completion_tokens for c in choices),
            finish_reason=first.finish_reason,
            choices=tuple(c.text for c in choices),
        )

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        return await asyncio.to_thread(self.complete_sync, messages, params)


def wire_fields(params: CompletionParams) -> dict[str, Any]:
    """The request body's fields for `params`, as an OpenAI-compatible server receives them."""
    return {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "logprobs": params.logprobs,
        "top_logprobs": params.top_logprobs if params.logprobs else None,
        "seed": params.seed,
        "n": params.n,
        **params.extra,
    }


def token_logprob(t: TokenOut) -> TokenLogprob:
    """A generated token as the engine-neutral `TokenLogprob` (text decoded, bytes replaced)."""
    return TokenLogprob(_text(t.piece), t.logprob, tuple((_text(b), lp) for _, b, lp in t.top))


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")
