"""Reading one variable's code from JSON answers that code every variable at once."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..codebook import Variable
from .result import INVALID, VariableResult
from .sample import vote_shares
from .text import parse_label


def joint_value(answer: str, variable: Variable) -> object:
    """The value an answer gives for `variable`, or None when the answer is not that JSON."""
    try:
        data = json.loads(answer)
    except json.JSONDecodeError:
        return None
    return data.get(variable.name) if isinstance(data, dict) else None


def joint_result(answers: Sequence[str], variable: Variable) -> VariableResult:
    """Vote shares over the answers (probability 1 with one answer); multi-label: per category."""
    values = [joint_value(a, variable) for a in answers]
    raw = (
        json.dumps(values[0], ensure_ascii=False)
        if values and values[0] is not None
        else (answers[0] if answers else "")
    )
    if variable.multi:
        n = max(1, len(values))
        probs = dict.fromkeys(variable.labels, 0.0)
        for value in values:
            items = value if isinstance(value, list) else []
            found = {c.label for c in (parse_label(str(i), variable) for i in items) if c}
            for lab in found:
                probs[lab] += 1 / n
        chosen = [lab for lab in variable.labels if probs[lab] >= 0.5]
        extra: dict[str, object] = {"multi": True}
        if len(values) > 1:
            extra["n"] = len(values)
        return VariableResult(";".join(chosen), probs, 0.0, raw=raw, extra=extra)
    texts = [str(v) if v is not None else "" for v in values]
    result = vote_shares(texts, variable)
    extra = dict(result.extra) if len(values) > 1 else {}
    return VariableResult(
        label=result.label if result.label else INVALID,
        probs=result.probs,
        other=result.other,
        raw=raw,
        extra=extra,
    )
