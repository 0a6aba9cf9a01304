"""Tool calls on the embedded engine: how tools are put to the model, the grammar its answer
follows, and reading calls back out of the answer as it streams.

A call is written as Hermes/Qwen models write it, one per block:
`<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`, blocks separated by a
newline. The grammar makes `name` one of the offered functions and `arguments` valid for its
JSON schema. When the model may also answer in text (`auto`), a text answer is anything
that does not start with `<`, and a call is constrained from its first character on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .grammar import InvalidRequest, check_schema, schema_grammar

OPEN = "<tool_call>\n"
CLOSE = "\n</tool_call>"
_HEAD = re.compile(r'\{ ?"name" ?: ?"([A-Za-z0-9_-]+)"')
_ARGS = re.compile(r' ?, ?"arguments" ?: ?')
_DECODER = json.JSONDecoder(strict=False)
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, its arguments' JSON schema."""

    name: str
    parameters: dict[str, Any] = field(default_factory=lambda: dict(NO_ARGUMENTS))
    description: str | None = None


def call_text(name: str, arguments: str) -> str:
    """One call as the model writes it (for calls in the history)."""
    return f'{OPEN}{{"name": "{name}", "arguments": {arguments.strip() or "{}"}}}{CLOSE}'


def tools_note(tools: list[Tool]) -> str:
    """What the system message tells the model about the tools it may call."""
    specs = "\n".join(
        json.dumps({"name": t.name, "description": t.description or "", "parameters": t.parameters})
        for t in tools
    )
    return (
        "You may call these functions. Each line gives one, with the JSON Schema of its "
        f"arguments:\n{specs}\nTo call a function, answer with\n"
        f'{OPEN}{{"name": <function name>, "arguments": <arguments as JSON>}}{CLOSE}'
    )


def check_tool_schema(schema: dict[str, Any], param: str) -> None:
    """InvalidRequest (naming `param`) unless `schema` describes arguments we can enforce."""
    if schema.get("type", "object") != "object":
        raise InvalidRequest(f"{param} must describe an object (type 'object')", param)
    try:
        check_schema(schema)
    except InvalidRequest as exc:
        raise InvalidRequest(str(exc), param, exc.code) from None


def tool_grammar(tools: list[Tool], *, required: bool, parallel: bool) -> str:
    """GBNF for an answer that calls `tools` (one, or several if `parallel`), or, unless
    `required`, answers in text."""
    calls = [
        {"type": "object", "required": ["name", "arguments"], "additionalProperties": False,
         "properties": {"name": {"const": t.name}, "arguments": {"$ref": f"#/$defs/tool{i}"}}}
        for i, t in enumerate(tools)
    ]  # fmt: skip
    schema = {"anyOf": calls, "$defs": {f"tool{i}": _rehome(t.parameters, i) for i, t in
                                        enumerate(tools)}}  # fmt: skip
    rules = {
        "block": f"{_lit(OPEN)} call {_lit(CLOSE)}",
        "calls": 'block ("\\n" block)*' if parallel else "block",
        "text": "([^<\\x00] [^\\x00]*)?",
        "root": "calls" if required else "calls | text",
    }
    return schema_grammar(schema, "call", rules)


def _lit(text: str) -> str:
    return json.dumps(text)


def _rehome(schema: dict[str, Any], i: int) -> dict[str, Any]:
    """Tool `i`'s schema moved to `#/$defs/tool{i}`: its local refs follow, its definitions
    get names of their own (the converter names rules after a definition's last key)."""
    prefix = f"#/$defs/tool{i}"

    def move(node: Any) -> Any:
        if isinstance(node, list):
            return [move(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: move(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            parts = ref[1:].split("/")
            if len(parts) >= 3 and parts[1] in ("$defs", "definitions"):
                parts[2] = f"t{i}-{parts[2]}"
            out["$ref"] = prefix + "/".join(parts)
        return out

    moved: dict[str, Any] = move(schema)
    for key in ("$defs", "definitions"):
        if isinstance(moved.get(key), dict):
            moved[key] = {f"t{i}-{k}": v for k, v in moved[key].items()}
    return moved


@dataclass
class _Call:
    name: str | None = None
    args: str = ""  # the arguments' text sent so far


@dataclass(frozen=True)
class Text:
    """Answer text."""

    text: str


@dataclass(frozen=True)
class CallStart:
    """Call `index` began: the function's name."""

    index: int
    name: str


@dataclass(frozen=True)
class CallArgs:
    """More of call `index`'s arguments."""

    index: int
    text: str


Piece = Text | CallStart | CallArgs


class CallReader:
    """Reads one answer as it grows: text, or tool calls as their names and pieces of their
    arguments (what is sure to belong to them; whitespace that may end them is held)."""

    def __init__(self) -> None:
        self.buf = ""
        self.calls: list[_Call] = []
        self.is_text: bool | None = None

    def feed(self, text: str, final: bool = False) -> list[Piece]:
        """The pieces `text` completes; `final`: the answer ended, release everything."""
        self.buf += text
        if self.is_text is None and self.buf:
            self.is_text = not self.buf.startswith("<")
        if self.is_text:
            return [Text(text)] if text else []
        out: list[Piece] = []
        pos = 0
        for k in range(len(self.buf)):  # at most one call per character
            if not OPEN.startswith(self.buf[pos : pos + len(OPEN)]):
                break
            body = self.buf[pos + len(OPEN) :] if self.buf.startswith(OPEN, pos) else ""
            head = _HEAD.match(body)
            if head is None:
                break
            if k == len(self.calls):
                self.calls.append(_Call(head.group(1)))
                out.append(CallStart(k, head.group(1)))
            rest = _ARGS.match(body, head.end())
            if rest is None:
                break
            args, end = _arguments(body[rest.end() :], final)
            call = self.calls[k]
            if len(args) > len(call.args):
                out.append(CallArgs(k, args[len(call.args) :]))
                call.args = args
            if end is None:
                break
            close = self.buf.find(CLOSE, pos + len(OPEN) + rest.end() + end)
            if close < 0:
                break
            pos = close + len(CLOSE) + 1  # the newline before the next call
        return out

    def finish(self) -> list[Piece]:
        """Whatever was held back, now that the answer is complete."""
        return self.feed("", final=True)

    @property
    def text(self) -> str | None:
        """The answer as text (None when it made calls)."""
        return self.buf if self.is_text or not self.calls else None


def _arguments(text: str, final: bool) -> tuple[str, int | None]:
    """(the arguments' text that is sure, where they end or None while they are open)."""
    try:
        _, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return (text if final else text.rstrip()), None
    return text[:end], end
