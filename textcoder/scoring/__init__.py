"""From an engine's answer to category probabilities, one function per scoring method."""

from __future__ import annotations

from ..backends.base import Completion
from ..codebook import Variable
from .logprobs import category_mass
from .result import INVALID, VariableResult, normalise
from .text import parse_label

METHODS = ("exact", "logprobs", "text", "sample")


def score_completion(completion: Completion, variable: Variable, method: str) -> VariableResult:
    """Code one variable from one answer with `method` (`logprobs` or `text`)."""
    answer = completion.text
    cat = parse_label(answer, variable)
    label = cat.label if cat is not None else INVALID
    if method == "logprobs":
        if not completion.tokens:
            return VariableResult(
                label=label,
                probs=dict.fromkeys(variable.labels, 0.0),
                other=1.0,
                raw=answer,
                error="the server returned no logprobs; use --scoring text",
            )
        probs, other = normalise(*_with_other(category_mass(completion.tokens, variable)))
        return VariableResult(label=label, probs=probs, other=other, raw=answer)
    if method == "text":
        probs = {lab: 1.0 if lab == label else 0.0 for lab in variable.labels}
        return VariableResult(
            label=label, probs=probs, other=0.0 if cat is not None else 1.0, raw=answer
        )
    if method == "exact":
        raise ValueError("scoring 'exact' scores labels under the model, not an answer")
    raise ValueError(f"unknown scoring method {method!r}; one of {METHODS}")


def _with_other(mass: dict[str, float]) -> tuple[dict[str, float], float]:
    total = sum(mass.values())
    if total > 1.0:
        return mass, 0.0
    return mass, 1.0 - total


__all__ = [
    "INVALID",
    "METHODS",
    "VariableResult",
    "category_mass",
    "normalise",
    "parse_label",
    "score_completion",
]
