"""The one interface every engine plugs into, and the engine-neutral answer it returns."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..prompt import Message


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
class Capabilities:
    """What an engine honours: logprobs, top_logprobs, several choices (`n`), json_schema."""

    logprobs: bool
    top_logprobs: bool
    n: bool
    json_schema: bool | None = None  # None: not probed (only joint codebooks need it)

    def default_scoring(self) -> str:
        """`logprobs` where the engine gives top_logprobs, else `sample`."""
        return "logprobs" if self.logprobs and self.top_logprobs else "sample"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """An engine that answers chat requests: OpenAI-compatible HTTP, or llama.cpp in process."""

    #: short name recorded in manifests (`openai`, `local`)
    name: str = ""
    #: the scoring method used when the user names none
    default_scoring: str = "logprobs"
    #: how many requests the runner keeps in flight by default
    default_concurrency: int = 1

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
        """What this engine honours, where it is known without asking (local engines)."""
        return Capabilities(logprobs=True, top_logprobs=True, n=True, json_schema=False)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Anything to settle before the first request (e.g. which model a server serves)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or memory; the default holds nothing."""
