"""The one interface every engine plugs into, and the engine-neutral answer it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypedDict

from ..retry import RetryPolicy


class Message(TypedDict):
    """One chat message as OpenAI's Chat Completions API takes it."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, log-probability and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CompletionParams:
    """What a classification request asks of the engine."""

    max_tokens: int = 8
    temperature: float = 0.0
    logprobs: bool = True
    top_logprobs: int = 20
    seed: int | None = None
    n: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as recorded in a manifest."""
        out: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs if self.logprobs else None,
            "seed": self.seed,
            "n": self.n,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Completion:
    """An engine's answer to one request, whichever engine gave it."""

    text: str
    tokens: tuple[TokenLogprob, ...] = ()
    model: str = ""
    system_fingerprint: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    #: every choice's text when `n` > 1 was asked (the first is `text`)
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContinuationScores:
    """log P(continuation | prompt) for each continuation asked, and the tokens evaluated."""

    logprobs: tuple[float, ...]
    prompt_tokens: int = 0
    model: str = ""
    system_fingerprint: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One Chat Completions request: messages and parameters."""

    messages: list[Message]
    params: CompletionParams


@dataclass(frozen=True)
class ContinuationRequest:
    """Score each continuation after the rendered prompt (`exact`): the first `n_prefix`
    messages, and `head` (the user turn's text before the text itself), are shared by every
    text, so an engine may cache them."""

    messages: list[Message]
    continuations: tuple[str, ...]
    n_prefix: int
    head: str = ""


#: what an engine is asked, and what it answers
Request = ChatRequest | ContinuationRequest
Answer = Completion | ContinuationScores


@dataclass(frozen=True)
class Capabilities:
    """What an engine honours: logprobs, top_logprobs, several choices (`n`), json_schema,
    and scoring continuations after a prompt (`continuations`, what `exact` needs)."""

    logprobs: bool
    top_logprobs: bool
    n: bool
    json_schema: bool | None = None  # None: not probed (only joint codebooks need it)
    continuations: bool = False
    #: continuation scoring evaluates the shared prefix once (the local engine), so `exact`
    #: costs a text's own tokens; over HTTP each request pays its whole prompt
    prefix_cache: bool = False
    #: requests the probe sent to find these out (0 where nothing was asked)
    probe_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: what each capability flag lets an engine do, for messages
ABILITIES = {
    "logprobs": "return logprobs",
    "top_logprobs": "return top_logprobs",
    "n": "return several choices (n)",
    "json_schema": "follow a json_schema",
    "continuations": "score continuations after a prompt (the local engine; vLLM)",
    "prefix_cache": "keep the shared prefix evaluated between texts",
}


class Backend(ABC):
    """An engine that answers chat requests: OpenAI-compatible HTTP, or llama.cpp in process."""

    #: short name recorded in manifests (`openai`, `local`)
    name: str = ""
    #: how many requests the runner keeps in flight by default (per engine)
    default_concurrency: int = 1
    #: how many engines the backend spreads requests over (several servers: a pool)
    width: int = 1

    def set_concurrency(self, per_engine: int) -> None:  # noqa: B027 - optional hook
        """How many requests each engine may have in flight (a pool enforces it)."""

    @property
    @abstractmethod
    def model(self) -> str:
        """The model's name as requests give it."""

    @abstractmethod
    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        """Answer one chat request."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this engine."""
        return {"backend": self.name, "model": self.model}

    def capabilities(self) -> Capabilities:
        """What this engine honours, as far as it is known without asking."""
        return Capabilities(logprobs=True, top_logprobs=True, n=True, json_schema=False)

    async def probe(
        self,
        json_schema: bool = False,
        retry: RetryPolicy | None = None,
        continuations: bool = False,
    ) -> Capabilities:
        """What this engine honours, asking the engine where it must (HTTP servers), retried
        as requests are; `json_schema`: find out about that too (joint codebooks);
        `continuations`: ask about exact scoring (an optional route: only when asked for)."""
        return self.capabilities()

    def truncate(self, text: str, around: Sequence[Message], answer_tokens: int) -> str:
        """`text` cut (at a token) so that `around` (the request with an empty text) plus the
        text plus `answer_tokens` fit the model's context; engines that know their tokenizer."""
        from .._exceptions import UsageError

        raise UsageError(
            f"--truncate needs an engine whose tokenizer and context textcoder knows (the "
            f"local engine); the {self.name} backend reports a text too long as its row's error"
        )

    async def score_continuations(self, request: ContinuationRequest) -> ContinuationScores:
        """log P(continuation | prompt) per continuation; engines with `continuations`."""
        raise NotImplementedError(f"the {self.name} backend cannot score continuations")

    async def answer(self, request: Request) -> Answer:
        """Answer any request: a chat completion, or continuation scores."""
        if isinstance(request, ContinuationRequest):
            return await self.score_continuations(request)
        return await self.complete(request.messages, request.params)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Anything to settle before the first request (e.g. which model a server serves)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or memory; the default holds nothing."""

    def close(self) -> None:
        """`aclose` from synchronous code."""
        from ..asyncsync import run_sync

        run_sync(self.aclose)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
