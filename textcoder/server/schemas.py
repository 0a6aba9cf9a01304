"""The Chat Completions request, validated with pydantic, and the checks OpenAI makes on it.

Parsing is strict JSON (a string is not a number, 1 is not a boolean); unknown fields are
accepted and ignored, as OpenAI's own platform-only fields (`user`, `store`, ...) are. Every
problem becomes an `APIError` 400 naming the field (`param`), never pydantic's 422.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.llama.tools import call_text
from .errors import APIError, bad_request, unsupported

INT64 = 2**63

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool | None = None


class ChatMessage(BaseModel):
    """One message as sent; content checks that need the role are done in `_message`."""

    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(BaseModel):
    """The fields of `POST /v1/chat/completions` this server reads."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    seed: Annotated[int, Field(ge=-INT64, lt=INT64)] | None = None
    stop: str | Annotated[list[str], Field(min_length=1, max_length=4)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(BaseModel):
    """The fields of legacy `POST /v1/completions` this server reads, with vLLM's
    `prompt_logprobs`; `max_tokens` 0 is allowed with `echo` (score the prompt only)."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str
    prompt: (
        str
        | Annotated[list[str], Field(min_length=1)]
        | Annotated[list[int], Field(min_length=1)]
        | Annotated[list[Annotated[list[int], Field(min_length=1)]], Field(min_length=1)]
    )
    max_tokens: Annotated[int, Field(ge=0)] = 16
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    seed: Annotated[int, Field(ge=-INT64, lt=INT64)] | None = None
    stop: str | Annotated[list[str], Field(min_length=1, max_length=4)] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    echo: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    prompt_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, float] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None


class TokenizeRequest(BaseModel):
    """vLLM's `POST /tokenize`: a `prompt`, or chat `messages` rendered by the chat template."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str | None = None
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool | None = None


def parse_completion_request(body: bytes) -> CompletionRequest:
    """A legacy Completions request, or an APIError 400 naming the first wrong field."""
    try:
        req = CompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if req.stream and req.prompt_logprobs is not None:
        raise bad_request("prompt_logprobs is not supported with stream", "prompt_logprobs")
    if req.stream_options is not None and not req.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")
    if req.suffix:
        raise unsupported("suffixes (insertion)", "suffix")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise bad_request("best_of must equal n on this server", "best_of")
    if req.max_tokens == 0 and not req.echo:
        raise bad_request("max_tokens 0 is allowed only with echo (score the prompt)", "max_tokens")
    if isinstance(req.stop, list) and any(s == "" for s in req.stop):
        raise bad_request("stop sequences must not be empty", "stop")
    return req


def parse_tokenize_request(body: bytes) -> TokenizeRequest:
    """A /tokenize request: exactly one of `prompt` and `messages`."""
    try:
        req = TokenizeRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if (req.prompt is None) == (req.messages is None):
        raise bad_request("give exactly one of prompt and messages", "prompt")
    return req


#: fields whose features this server does not offer: (field, what to call them)
UNSUPPORTED = {
    "functions": "functions (use tools)",
    "function_call": "functions",
    "audio": "audio outputs",
    "prediction": "predicted outputs",
    "web_search_options": "web search options",
}

ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_request(body: bytes) -> ChatRequest:
    """The request, or an APIError 400 naming the first field that is wrong."""
    try:
        req = ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    extra = req.model_extra or {}
    for key, feature in UNSUPPORTED.items():
        value = extra.get(key)
        if value not in (None, [], False):
            raise unsupported(feature, key)
    modalities = extra.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported("output modalities other than text", "modalities")
    if req.top_logprobs is not None and not req.logprobs:
        raise bad_request("top_logprobs requires logprobs to be true", "top_logprobs")
    if req.stream_options is not None and not req.stream:
        raise bad_request("stream_options is only allowed when stream is true", "stream_options")
    if isinstance(req.stop, list) and any(s == "" for s in req.stop):
        raise bad_request("stop sequences must not be empty", "stop")
    return req


def template_messages(req: ChatRequest | TokenizeRequest) -> list[dict[str, str]]:
    """The messages as the chat template takes them: role and text (developer -> system)."""
    return [_message(m, i) for i, m in enumerate(req.messages or [])]


def _message(m: ChatMessage, i: int) -> dict[str, str]:
    where = f"messages[{i}]"
    if m.role == "function":
        raise unsupported("function messages (use tool messages)", f"{where}.role")
    if m.role not in ROLES:
        raise bad_request(f"invalid role {m.role!r}: one of {', '.join(ROLES)}", f"{where}.role")
    extra = m.model_extra or {}
    for key in ("function_call", "audio"):
        if extra.get(key):
            raise unsupported("function calls" if key != "audio" else "audio", f"{where}.{key}")
    if m.role == "tool" and not isinstance(extra.get("tool_call_id"), str):
        raise bad_request(f"{where}.tool_call_id is required for role 'tool'",
                          f"{where}.tool_call_id")  # fmt: skip
    calls = extra.get("tool_calls") if m.role == "assistant" else None
    if calls and not isinstance(calls, list):
        raise bad_request(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    if m.content is None:
        if m.role != "assistant":
            raise bad_request(
                f"{where}.content is required for role {m.role!r}", f"{where}.content"
            )
        text = ""
    elif isinstance(m.content, str):
        text = m.content
    else:
        text = "\n".join(_text_part(p, f"{where}.content[{j}]") for j, p in enumerate(m.content))
    if calls:  # earlier calls, written as the model writes them
        blocks = [_history_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)]
        text = "\n".join([text, *blocks] if text else blocks)
    role = "system" if m.role == "developer" else m.role
    return {"role": role, "content": text}


def _history_call(call: Any, where: str) -> str:
    """A call the assistant made earlier, written as the model writes calls."""
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad_request(f"{where}.function.name is required", f"{where}.function.name")
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        raise bad_request(f"{where}.function.arguments must be a string",
                          f"{where}.function.arguments")  # fmt: skip
    return call_text(fn["name"], args)


def _text_part(part: dict[str, Any], where: str) -> str:
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise bad_request(f"{where}.text must be a string", f"{where}.text")
        return text
    if kind in ("image_url", "input_image"):
        raise unsupported("images", where)
    if kind in ("input_audio", "audio"):
        raise unsupported("audio inputs", where)
    if kind == "file":
        raise unsupported("file inputs", where)
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return str(part["refusal"])
    raise bad_request(f"{where}.type must be 'text', got {kind!r}", f"{where}.type")


def validation_error(exc: ValidationError) -> APIError:
    """pydantic's first error as a 400 naming the field (never a 422)."""
    errors = exc.errors(include_url=False)
    # of a union's failed members, the one that says most: a bound, not "not a string"
    err = min(errors, key=lambda e: (e["type"].endswith("_type"), errors.index(e)))
    if err["type"] == "json_invalid":
        return bad_request(f"the request body is not valid JSON: {err['msg']}")
    if err["type"] == "model_type" and not err["loc"]:
        return bad_request("the request body must be a JSON object")
    loc = [p for p in err["loc"] if not (isinstance(p, str) and _is_type_tag(p))]
    param = _param(loc)
    if err["type"] == "missing":
        return bad_request(f"missing required parameter: {param}", param)
    value = err.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return bad_request(f"invalid value for {param} ({shown}): {err['msg']}", param)


def _is_type_tag(part: str) -> bool:
    """pydantic names union members in `loc` (`str`, `list[...]`, `constrained-float`)."""
    return (
        part in ("str", "int", "float", "bool", "none")
        or "[" in part
        or part.startswith(("constrained", "function-"))
    )


def _param(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
