"""Tool calls in OpenAI's shapes: `tools`, `tool_choice` and `parallel_tool_calls` read from a
Chat Completions request (nested `function`) or a Responses request (flat), the tools put to
the model, and its answer as `tool_calls` with ids, whole or as streamed deltas.

`tool_choice` `required` or a named function constrains the answer to calls; `auto` lets the
model answer in text or call; `none` ignores the tools (they are not shown to the model).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..backends.llama.grammar import NAME
from ..backends.llama.tools import (
    NO_ARGUMENTS,
    CallArgs,
    CallReader,
    CallStart,
    Piece,
    Text,
    Tool,
    check_tool_schema,
    tool_grammar,
    tools_note,
)
from .errors import bad_request, unsupported


@dataclass(frozen=True)
class ToolPlan:
    """The tools shown to the model, those it may call now, and how."""

    offered: list[Tool]
    allowed: list[Tool]
    required: bool
    parallel: bool

    def grammar(self) -> str:
        return tool_grammar(self.allowed, required=self.required, parallel=self.parallel)


def tool_plan(body: dict[str, Any], *, flat: bool = False) -> ToolPlan | None:
    """The request's tool plan (None: answer in text only); `flat`: the Responses API's
    shapes (`{"type": "function", "name": ...}`) instead of Chat Completions' nested ones."""
    raw = body.get("tools")
    choice = body.get("tool_choice")
    if raw in (None, []):
        if choice not in (None, "none"):
            raise bad_request("tool_choice requires tools", "tool_choice")
        return None
    if not isinstance(raw, list):
        raise bad_request("tools must be a list", "tools")
    tools = [_tool(t, f"tools[{i}]", flat) for i, t in enumerate(raw)]
    names = [t.name for t in tools]
    if len(set(names)) < len(names):
        raise bad_request("tools must have distinct names", "tools")
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise bad_request("parallel_tool_calls must be a boolean", "parallel_tool_calls")
    mode, allowed = _choice(choice, tools, flat)
    if mode == "none":
        return None
    return ToolPlan(tools, allowed, mode == "required", parallel is not False)


def _tool(t: Any, where: str, flat: bool) -> Tool:
    if not isinstance(t, dict) or t.get("type") != "function":
        kind = t.get("type") if isinstance(t, dict) else None
        raise unsupported(f"tools of type {kind!r} (only 'function')", f"{where}.type")
    spec = t if flat else t.get("function")
    where = where if flat else f"{where}.function"
    if not isinstance(spec, dict):
        raise bad_request(f"{where} must be an object", where)
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise bad_request(f"{where}.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
                          f"{where}.name")  # fmt: skip
    params = spec.get("parameters")
    if params is None:
        params = dict(NO_ARGUMENTS)
    elif not isinstance(params, dict):
        raise bad_request(f"{where}.parameters must be a JSON Schema object", f"{where}.parameters")
    check_tool_schema(params, f"{where}.parameters")
    desc = spec.get("description")
    return Tool(name, params, desc if isinstance(desc, str) else None)


def _choice(choice: Any, tools: list[Tool], flat: bool) -> tuple[str, list[Tool]]:
    """(none | auto | required, the tools that may be called) for a `tool_choice`."""
    if choice is None:
        return "auto", tools
    if choice in ("none", "auto", "required"):
        return str(choice), tools
    by_name = {t.name: t for t in tools}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name") if flat else (choice.get("function") or {}).get("name")
        if not isinstance(name, str) or name not in by_name:
            raise bad_request(f"tool_choice names {name!r}, which is not in tools", "tool_choice")
        return "required", [by_name[name]]
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        spec = choice if flat else choice.get("allowed_tools") or {}
        mode = spec.get("mode")
        picked = [str(t.get("name") if flat else (t.get("function") or {}).get("name"))
                  for t in spec.get("tools") or [] if isinstance(t, dict)]  # fmt: skip
        if mode not in ("auto", "required") or not picked or any(n not in by_name for n in picked):
            raise bad_request("tool_choice.allowed_tools needs mode auto or required and "
                              "tools among those given", "tool_choice")  # fmt: skip
        return str(mode), [by_name[n] for n in picked]
    raise bad_request("tool_choice must be 'none', 'auto', 'required' or a function", "tool_choice")


def with_tools_note(messages: list[dict[str, Any]], plan: ToolPlan | None
                    ) -> list[dict[str, Any]]:  # fmt: skip
    """`messages` with the tools described in the system message (one is added if none)."""
    if plan is None:
        return messages
    note = tools_note(plan.offered)
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{note}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def read_calls(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(the answer's text, or None if it called; the calls as (name, arguments JSON))."""
    reader = CallReader()
    calls: list[list[str]] = []
    for piece in reader.feed(text, final=True):
        if isinstance(piece, CallStart):
            calls.append([piece.name, ""])
        elif isinstance(piece, CallArgs):
            calls[piece.index][1] += piece.text
    return reader.text, [(name, args) for name, args in calls]


def answer_message(text: str, finish: str, plan: ToolPlan | None) -> tuple[dict[str, Any], str]:
    """A chat choice's `message` and `finish_reason` (`tool_calls` when it called)."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if plan is None:
        return message, finish
    content, calls = read_calls(text)
    if not calls:
        return message, finish
    message["content"] = content
    message["tool_calls"] = [
        {"id": call_id(), "type": "function", "function": {"name": n, "arguments": a}}
        for n, a in calls
    ]
    return message, "tool_calls" if finish == "stop" else finish


class ToolDeltas:
    """One streamed choice's text as chunk deltas: `content`, or `tool_calls` entries whose
    id, type and name come only in a call's first delta (the client concatenates strings);
    the first delta names the role (content null when it calls)."""

    def __init__(self) -> None:
        self.reader = CallReader()
        self.called = False
        self.started = False

    def delta(self, text: str, final: bool = False) -> dict[str, Any] | None:
        got = self._delta(text, final)
        if final and got is None and not self.started:
            got = {"content": ""}  # an empty answer still names its role
        if got is not None and not self.started:
            self.started = True
            got = {"role": "assistant", "content": None, **got}
        return got

    def _delta(self, text: str, final: bool) -> dict[str, Any] | None:
        pieces: list[Piece] = self.reader.feed(text, final)
        content = "".join(p.text for p in pieces if isinstance(p, Text))
        entries: dict[int, dict[str, Any]] = {}
        for p in pieces:
            if isinstance(p, CallStart):
                self.called = True
                entries[p.index] = {"index": p.index, "id": call_id(), "type": "function",
                                    "function": {"name": p.name, "arguments": ""}}  # fmt: skip
            elif isinstance(p, CallArgs):
                entry = entries.setdefault(
                    p.index, {"index": p.index, "function": {"arguments": ""}}
                )
                entry["function"]["arguments"] += p.text
        if entries:
            return {"tool_calls": list(entries.values())}
        return {"content": content} if content else None

    def finish_reason(self, finish: str) -> str:
        return "tool_calls" if self.called and finish == "stop" else finish
