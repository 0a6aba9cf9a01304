"""What every scoring method is: what it needs from an engine, what it adds to a request, and
how the answers become one variable's probabilities. Nothing outside `scoring/` asks which
method it has; it asks the scorer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from ..backends.base import (
    Answer,
    Capabilities,
    ChatRequest,
    CompletionParams,
    Message,
    Request,
)
from ..codebook import Variable
from .result import VariableResult


@dataclass(frozen=True)
class Settings:
    """What the user asked of every request (None: the method's own default)."""

    max_tokens: int = 10
    temperature: float | None = None
    seed: int | None = 0
    n: int = 5


@dataclass(frozen=True)
class RequestContext:
    """What shapes a request besides its messages: the engine's abilities and the template."""

    capabilities: Capabilities
    #: the template's text before `{text}` (exact scoring caches it with the prefix)
    head: str = ""


class Scorer(ABC):
    """One scoring method: its needs, its request parameters, its reading of answers."""

    #: the method's name, as `--scoring` takes it
    name: ClassVar[str]
    #: the `Capabilities` flags an engine must have for this method
    needs: ClassVar[tuple[str, ...]] = ()
    #: flags besides `needs` for the method to be the default (cheap enough there)
    default_needs: ClassVar[tuple[str, ...]] = ()
    #: extra per-variable output columns (`V_<kind>`), read from `VariableResult.extra`
    columns: ClassVar[tuple[str, ...]] = ()
    #: the calibration used when the user names none (chosen from the figures in docs/concepts/calibration.md)
    calibration: ClassVar[str] = "none"
    #: whether this method's requests depend on what an HTTP server honours, so that the
    #: server is probed before a run (sample: `n`; exact: continuation scoring)
    probes: ClassVar[bool] = False

    def supported(self, capabilities: Capabilities) -> bool:
        """Whether an engine with these capabilities can score this way."""
        return all(getattr(capabilities, flag) for flag in self.needs)

    def suits(self, capabilities: Capabilities) -> bool:
        """Whether this method is a good default on such an engine."""
        flags = (*self.needs, *self.default_needs)
        return all(getattr(capabilities, flag) for flag in flags)

    def params(self, settings: Settings) -> CompletionParams:
        """The parameters of this method's requests."""
        return CompletionParams(
            max_tokens=settings.max_tokens,
            temperature=settings.temperature if settings.temperature is not None else 0.0,
            logprobs=False,
            seed=settings.seed,
            n=1,
        )

    def requests(
        self,
        messages: list[Message],
        variable: Variable,
        params: CompletionParams,
        ctx: RequestContext,
    ) -> list[Request]:
        """What is sent to code `variable` from `messages`: by default one chat request."""
        return list(self.expand(ChatRequest(messages, params), ctx))

    def expand(self, request: ChatRequest, ctx: RequestContext) -> Sequence[ChatRequest]:
        """The chat requests that stand for `request` on this engine (itself by default)."""
        return [request]

    @abstractmethod
    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        """One variable's result from the answers to `requests(...)`, in the same order."""
