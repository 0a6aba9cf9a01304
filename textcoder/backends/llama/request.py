"""One translation of a chat request's fields into what the engine runs, for both callers.

`textcoder serve` (after validating the JSON) and `LocalBackend.complete` (from its
`CompletionParams`) both hand OpenAI's field names to `ChatParams.from_fields`, then
`prepare` renders and tokenizes the prompt, checks it against the context, turns
`response_format` into a grammar (refusing what it cannot enforce) and checks `logit_bias`:
the same answer for the same request, whichever way it came in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..base import Message
from .engine import LocalEngine
from .generate import SamplingParams
from .grammar import InvalidRequest, check_grammar, response_format_grammar


@dataclass(frozen=True)
class ChatParams:
    """The fields of a Chat Completions request that the engine honours, with OpenAI's
    defaults (temperature 1, no token limit but the context)."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: Mapping[str, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: Any = None
    #: GBNF the answer must follow, set by the caller (tool calls); wins over response_format
    grammar: str | None = None

    @classmethod
    def from_fields(cls, body: Mapping[str, Any]) -> ChatParams:
        """From a request body's fields (`max_completion_tokens` wins over `max_tokens`;
        fields the engine does not read are ignored)."""

        def get(key: str, default: Any) -> Any:
            value = body.get(key)
            return default if value is None else value

        stop = body.get("stop")
        return cls(
            max_tokens=_first(body.get("max_completion_tokens"), body.get("max_tokens")),
            temperature=float(get("temperature", 1.0)),
            top_p=float(get("top_p", 1.0)),
            n=int(get("n", 1)),
            seed=body.get("seed"),
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            logit_bias=dict(get("logit_bias", {})),
            presence_penalty=float(get("presence_penalty", 0.0)),
            frequency_penalty=float(get("frequency_penalty", 0.0)),
            logprobs=bool(get("logprobs", False)),
            top_logprobs=int(get("top_logprobs", 0)) if body.get("logprobs") else 0,
            response_format=body.get("response_format"),
        )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass(frozen=True)
class Prepared:
    """A request ready for `generate_choices`: the prompt's tokens and the sampler's params."""

    prompt: list[int]
    sampling: SamplingParams
    n: int
    seed: int | None
    logprobs: bool


def render_prompt(engine: LocalEngine, messages: Sequence[Message | dict[str, Any]]) -> list[int]:
    """The tokens the engine evaluates for `messages`: the chat template, then the tokenizer."""
    try:
        text = engine.render(messages)
    except Exception as exc:  # a template's raise_exception(): the messages do not fit it
        raise InvalidRequest(
            f"the model's chat template refused the messages: {exc}", "messages"
        ) from None
    return engine.tokenize(text)


def check_context(engine: LocalEngine, n_prompt: int, asked: int | None) -> None:
    """Refuse a prompt (and asked completion) longer than the context, as OpenAI words it."""
    n_ctx = engine.n_ctx
    if n_prompt < n_ctx and (asked is None or n_prompt + asked <= n_ctx):
        return
    detail = (
        f"your messages resulted in {n_prompt} tokens"
        if asked is None
        else f"you requested {n_prompt + asked} tokens ({n_prompt} in the "
        f"messages, {asked} in the completion)"
    )
    raise InvalidRequest(
        f"This model's maximum context length is {n_ctx} tokens. However, {detail}. "
        "Please reduce the length of the messages or completion.",
        "messages",
        code="context_length_exceeded",
    )


def token_bias(engine: LocalEngine, logit_bias: Mapping[str, float]) -> dict[int, float]:
    """`logit_bias` by token id, each key a token id of this model and each value in ±100."""
    bias: dict[int, float] = {}
    for key, value in logit_bias.items():
        param = f"logit_bias.{key}"
        if not key.strip().lstrip("-").isdigit() or not 0 <= int(key) < engine.n_vocab:
            raise InvalidRequest(
                f"logit_bias key {key!r} is not a token id of this model (0..{engine.n_vocab - 1})",
                param,
            )
        if not -100 <= value <= 100:
            raise InvalidRequest(f"logit_bias value {value} for {key!r} is not in -100..100", param)
        bias[int(key)] = float(value)
    return bias


def prepare(
    engine: LocalEngine, messages: Sequence[Message | dict[str, Any]], params: ChatParams
) -> Prepared:
    """Everything `generate_choices` needs for this request, or InvalidRequest naming the field."""
    return prepare_tokens(engine, render_prompt(engine, messages), params)


def prepare_tokens(engine: LocalEngine, prompt: list[int], params: ChatParams) -> Prepared:
    """`prepare` for a prompt already tokenized (legacy Completions)."""
    check_context(engine, len(prompt), params.max_tokens)
    gbnf = params.grammar or response_format_grammar(params.response_format)[0]
    if gbnf is not None:
        check_grammar(engine, gbnf)
    sampling = SamplingParams(
        max_tokens=engine.n_ctx - len(prompt) if params.max_tokens is None else params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        stop=params.stop,
        logit_bias=token_bias(engine, params.logit_bias),
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        top_logprobs=params.top_logprobs if params.logprobs else 0,
        grammar=gbnf,
    )
    return Prepared(prompt, sampling, max(1, params.n), params.seed, params.logprobs)
