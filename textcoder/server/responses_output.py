"""The Responses API's output as it grows: the model's text becomes a `message` item with one
`output_text` part, its calls become `function_call` items, and each step is a typed stream
event. A whole (non-streamed) response is the same steps with the events dropped, so both
ways give the same object."""

from __future__ import annotations

import uuid
from typing import Any

from openai.types.responses import Response

from ..backends.llama.generate import Delta, Finished, TokenOut
from ..backends.llama.tools import CallArgs, CallReader, CallStart, Piece, Text
from .chat import logprobs_json
from .tools import call_id


class ResponseBuilder:
    """One response: `start`, then `add` for each generation event, then `finish`; each
    returns the stream events it makes (`type`, `sequence_number` and fields)."""

    def __init__(self, base: dict[str, Any], tools: bool, logprobs: bool) -> None:
        self.base = base
        self.reader = CallReader() if tools else None
        self.logprobs = logprobs
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being written
        self.pending: list[TokenOut] = []  # tokens whose text is held back
        self.seq = 0
        self.status = "in_progress"
        self.usage: dict[str, Any] | None = None

    def response(self) -> dict[str, Any]:
        body = {**self.base, "status": self.status, "output": self.output, "usage": self.usage}
        if self.status == "incomplete":
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        Response.model_validate(body)
        return body

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        ev = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return ev

    def start(self) -> list[dict[str, Any]]:
        snapshot = self.response()
        return [self.event("response.created", response=snapshot),
                self.event("response.in_progress", response=snapshot)]  # fmt: skip

    def add(self, ev: Delta | Finished) -> list[dict[str, Any]]:
        if isinstance(ev, Delta):
            self.pending += ev.tokens
            pieces = self.reader.feed(ev.text) if self.reader else [Text(ev.text)]
        else:
            pieces = self.reader.finish() if self.reader else []
        out: list[dict[str, Any]] = []
        for piece in pieces:
            out += self._piece(piece)
        return out

    def finish(self, finish_reason: str, usage: dict[str, Any]) -> list[dict[str, Any]]:
        out = self._close()
        self.status = "incomplete" if finish_reason == "length" else "completed"
        self.usage = usage
        kind = "response.incomplete" if self.status == "incomplete" else "response.completed"
        return [*out, self.event(kind, response=self.response())]

    def _piece(self, piece: Piece) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(piece, Text):
            if not piece.text:
                return out
            if self.open is None or self.open["type"] != "message":
                out += self._close() + self._open_message()
            lp = self._token_logprobs()
            part = self.open["content"][0]  # type: ignore[index]
            part["text"] += piece.text
            part["logprobs"] += lp
            out.append(self.event("response.output_text.delta", **self._ids(), content_index=0,
                                  delta=piece.text, logprobs=lp))  # fmt: skip
        elif isinstance(piece, CallStart):
            out += self._close()
            item = {"type": "function_call", "id": f"fc_{uuid.uuid4().hex}", "call_id": call_id(),
                    "name": piece.name, "arguments": "", "status": "in_progress"}  # fmt: skip
            out += self._add_item(item)
        elif isinstance(piece, CallArgs) and self.open is not None:
            self.open["arguments"] += piece.text
            out.append(self.event("response.function_call_arguments.delta", **self._ids(),
                                  delta=piece.text))  # fmt: skip
        return out

    def _ids(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.output) - 1}

    def _token_logprobs(self) -> list[dict[str, Any]]:
        tokens, self.pending = self.pending, []
        return list(logprobs_json(tokens)["content"]) if self.logprobs else []

    def _add_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        self.output.append(item)
        self.open = item
        return [self.event("response.output_item.added", output_index=len(self.output) - 1,
                           item={**item, "content": []} if "content" in item else dict(item))]  # fmt: skip

    def _open_message(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"type": "message", "id": f"msg_{uuid.uuid4().hex}",
                                "role": "assistant", "status": "in_progress", "content": []}  # fmt: skip
        out = self._add_item(item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item["content"] = [part]
        out.append(self.event("response.content_part.added", **self._ids(), content_index=0,
                              part=dict(part)))  # fmt: skip
        return out

    def _close(self) -> list[dict[str, Any]]:
        """The events that end the open item (its status now completed)."""
        item = self.open
        if item is None:
            return []
        out = []
        if item["type"] == "message":
            part = item["content"][0]
            out.append(self.event("response.output_text.done", **self._ids(), content_index=0,
                                  text=part["text"], logprobs=part["logprobs"]))  # fmt: skip
            out.append(self.event("response.content_part.done", **self._ids(), content_index=0,
                                  part=dict(part)))  # fmt: skip
        else:
            out.append(self.event("response.function_call_arguments.done", **self._ids(),
                                  name=item["name"], arguments=item["arguments"]))  # fmt: skip
        item["status"] = "completed"
        out.append(self.event("response.output_item.done", output_index=len(self.output) - 1,
                              item=dict(item)))  # fmt: skip
        self.open = None
        return out
