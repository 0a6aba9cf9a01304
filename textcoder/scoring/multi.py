"""A multi-label variable: one yes/no question per category, each its own probability."""

from __future__ import annotations

from collections.abc import Sequence

from ..codebook import Variable
from .result import VariableResult

YES, NO = "yes", "no"
#: the yes/no scheme each category of a multi-label variable is asked as
YES_NO = Variable.model_validate({"name": "answer", "categories": [YES, NO]})


def multi_result(
    variable: Variable, answers: Sequence[VariableResult], threshold: float
) -> VariableResult:
    """The categories' yes-probabilities (one yes/no result per category, codebook order);
    the label lists those at or above `threshold`, `;`-separated."""
    probs: dict[str, float] = {}
    raws: list[str] = []
    for label, r in zip(variable.labels, answers, strict=True):
        if r.error:
            nan = float("nan")
            return VariableResult(
                "", dict.fromkeys(variable.labels, nan), nan, error=f"{label}: {r.error}"
            )
        yes, no = r.probs[YES], r.probs[NO]
        probs[label] = yes / (yes + no) if yes + no > 0 else 0.0
        raws.append(f"{label}: {r.raw}")
    chosen = [lab for lab in variable.labels if probs[lab] >= threshold]
    return VariableResult(
        label=";".join(chosen), probs=probs, other=0.0, raw="; ".join(raws), extra={"multi": True}
    )
