"""The Responses API request (`POST /v1/responses`): its fields, validated as the Chat
Completions request is, and its `input` turned into chat messages for the template.

Nothing is kept between requests (`store` is always false), so `previous_response_id`,
`conversation` and `background` are refused by name: the client sends the whole
conversation in `input`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.llama.tools import call_text
from .errors import bad_request, unsupported
from .schemas import StreamOptions, validation_error

#: what `include` may ask for; the logprobs of the answer's text
LOGPROBS = "message.output_text.logprobs"
#: fields that need state on the server, which it does not keep
STATEFUL = {
    "previous_response_id": "previous_response_id needs stored responses; this server "
    "stores none (store is always false): send the whole conversation in input",
    "conversation": "conversations are not stored by this server: send the whole "
    "conversation in input",
    "background": "background responses are not supported by this server (nothing is stored)",
}


class ResponsesRequest(BaseModel):
    """The fields of `POST /v1/responses` this server reads."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    include: list[str] | None = None
    text: dict[str, Any] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None


def parse_responses_request(body: bytes) -> ResponsesRequest:
    """The request, or an APIError 400 naming the first field that is wrong."""
    try:
        req = ResponsesRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    extra = req.model_extra or {}
    for key, message in STATEFUL.items():
        if extra.get(key) not in (None, False):
            raise bad_request(message, key, "unsupported_parameter")
    for key in req.include or []:
        if key != LOGPROBS:
            raise unsupported(f"include values other than {LOGPROBS!r}", "include")
    return req


def response_format(req: ResponsesRequest) -> dict[str, Any] | None:
    """`text.format` as Chat Completions' `response_format`."""
    fmt = (req.text or {}).get("format")
    if fmt is None or not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return fmt
    spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


def input_messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The instructions and input as chat messages (role and text)."""
    out: list[dict[str, Any]] = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        return [*out, {"role": "user", "content": req.input}]
    for i, item in enumerate(req.input):
        where = f"input[{i}]"
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            call = call_text(_str(item, "name", where), _str(item, "arguments", where))
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("calls"):
                last["content"] += "\n" + call  # one assistant turn for consecutive calls
            else:
                out.append({"role": "assistant", "content": call, "calls": True})
        elif kind == "function_call_output":
            _str(item, "call_id", where)
            output = item.get("output")
            text = output if isinstance(output, str) else _parts(output, f"{where}.output")
            out.append({"role": "tool", "content": text})
        else:
            raise unsupported(f"input items of type {kind!r}", f"{where}.type")
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise bad_request(f"{where}.role must be user, assistant, system or developer",
                          f"{where}.role")  # fmt: skip
    content = item.get("content")
    text = content if isinstance(content, str) else _parts(content, f"{where}.content")
    return {"role": "system" if role == "developer" else role, "content": text}


def _parts(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise bad_request(f"{where} must be a string or a list of content parts", where)
    texts = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif kind in ("input_image", "input_file", "input_audio"):
            raise unsupported(f"{kind} parts", f"{where}[{j}].type")
        else:
            raise bad_request(f"{where}[{j}] must be an input_text part", f"{where}[{j}]")
    return "\n".join(texts)


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise bad_request(f"{where}.{key} must be a string", f"{where}.{key}")
    return value
