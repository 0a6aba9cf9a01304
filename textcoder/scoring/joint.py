"""Reading every variable's code from one JSON answer (`mode: joint`).

A field's probabilities come from the answer's logprobs where the engine gives them: at the
token where the field's value begins, the top alternatives are mapped to categories as
`logprobs` scoring maps the first answer token, and renormalised over the categories (the
schema allows nothing else there), so they are the model's probabilities for that field
given the fields before it. Without logprobs, or for multi-label arrays, the
probabilities are vote shares over the answers (0/1 with one answer). An answer cut short
still gives the fields it completed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace

from ..backends.base import Answer, ChatRequest, Completion, CompletionParams, Message
from ..codebook import Codebook, Variable
from ..output import INVALID
from .base import Scorer
from .logprobs import category_mass
from .result import VariableResult, normalise
from .sample import choices, vote_shares
from .text import parse_label

_DECODER = json.JSONDecoder()
#: quote and space a token may carry before a field's value begins
_LEAD = ' \t\n"'


def joint_schema(codebook: Codebook) -> dict[str, object]:
    """The JSON schema of a joint answer: one enum field per variable; a multi-label variable
    an array holding each category at most once (so a grammar cannot loop on one item)."""
    props: dict[str, object] = {}
    for var in codebook.variables:
        enum = {"type": "string", "enum": var.labels}
        props[var.name] = (
            {"type": "array", "items": enum, "uniqueItems": True, "maxItems": len(var.labels)}
            if var.multi
            else enum
        )
    return {
        "type": "object",
        "properties": props,
        "required": [v.name for v in codebook.variables],
        "additionalProperties": False,
    }


def longest_answer(codebook: Codebook) -> int:
    """Bytes of the longest answer the schema allows (an upper bound on its tokens)."""
    longest: dict[str, object] = {}
    for var in codebook.variables:
        longest[var.name] = var.labels if var.multi else max(var.labels, key=len)
    return len(json.dumps(longest, ensure_ascii=False, indent=1).encode("utf-8"))


def joint_request(
    codebook: Codebook, messages: list[Message], params: CompletionParams, logprobs: bool
) -> ChatRequest:
    """The one request of a joint row: the schema enforced, room for the longest answer."""
    schema = {"name": "codes", "schema": joint_schema(codebook), "strict": True}
    return ChatRequest(
        messages,
        replace(
            params,
            logprobs=logprobs and params.n == 1,
            max_tokens=max(params.max_tokens, longest_answer(codebook) + 8),
            extra={
                **params.extra,
                "response_format": {"type": "json_schema", "json_schema": schema},
            },
        ),
    )


def field_value(answer: str, name: str) -> tuple[object, int] | None:
    """The value a (possibly cut short) JSON answer gives the field `name`, and where the
    value starts in the answer; None when the field is not there complete."""
    for m in re.finditer(r'"' + re.escape(name) + r'"\s*:\s*', answer):
        try:
            value, _ = _DECODER.raw_decode(answer, m.end())
        except json.JSONDecodeError:
            continue
        return value, m.end()
    return None


def _value_probs(completion: Completion, start: int, variable: Variable) -> VariableResult | None:
    """Category probabilities at the token where a value (starting at `start`, its opening
    quote) begins: the first token that holds any of the value's own characters."""
    if completion.text[start : start + 1] == '"':
        start += 1
    pos = 0
    for i, tok in enumerate(completion.tokens):
        end = pos + len(tok.token)
        if end > start:
            if completion.text[pos:start].strip(_LEAD) or not tok.top:
                return None
            mass = category_mass(completion.tokens[i:], variable)
            if not sum(mass.values()) > 0:
                return None
            # the schema allows only the categories here: renormalised over them
            probs, other = normalise(mass, 0.0)
            label = max(variable.labels, key=lambda lab: probs[lab])
            return VariableResult(label=label, probs=probs, other=other)
        pos = end
    return None


class JointScorer(Scorer):
    """All variables from JSON answers: probabilities from logprobs, else vote shares."""

    name = "joint"

    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        texts = choices(answers)
        found = [field_value(t, variable.name) for t in texts]
        values = [f[0] if f is not None else None for f in found]
        raw = json.dumps(values[0], ensure_ascii=False) if values and values[0] is not None else ""
        raw = raw or (texts[0] if texts else "")
        if variable.multi:
            return _multi_votes(values, variable, raw)
        votes = vote_shares([str(v) if v is not None else "" for v in values], variable)
        only = answers[0] if len(answers) == 1 else None
        if isinstance(only, Completion) and len(texts) == 1 and found[0] is not None:
            scored = _value_probs(only, found[0][1], variable)
            if scored is not None:
                chosen = votes.label if votes.label != INVALID else scored.label
                return replace(scored, label=chosen, raw=raw)
        extra = dict(votes.extra) if len(values) > 1 else {}
        return VariableResult(votes.label, votes.probs, votes.other, raw=raw, extra=extra)


def _multi_votes(values: Sequence[object], variable: Variable, raw: str) -> VariableResult:
    """A multi-label field: each category's share of the answers that list it."""
    n = max(1, len(values))
    probs = dict.fromkeys(variable.labels, 0.0)
    for value in values:
        items = value if isinstance(value, list) else []
        for lab in {c.label for c in (parse_label(str(i), variable) for i in items) if c}:
            probs[lab] += 1 / n
    chosen = [lab for lab in variable.labels if probs[lab] >= 0.5]
    extra: dict[str, object] = {"multi": True}
    if len(values) > 1:
        extra["n"] = len(values)
    if all(v is None for v in values):
        return VariableResult(INVALID, probs, 1.0, raw=raw, extra=extra)
    return VariableResult(";".join(chosen), probs, 0.0, raw=raw, extra=extra)
