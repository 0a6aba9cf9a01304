"""Scoring `exact`: every category's full label scored under the model, normalised over the scheme.

A category's mass is the probability that the assistant's answer begins with the label, summed
over its variants (as written, first letter upper-cased, lower-cased; each with and without
one leading space). The engine scores the variants' token sequences after the prompt; here
they are grouped per category and normalised, so `other` is 0 and every category gets a
probability. The raw answer recorded is the top label: nothing is generated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..backends.base import (
    Answer,
    CompletionParams,
    ContinuationRequest,
    ContinuationScores,
    Message,
    Request,
)
from ..codebook import Variable
from .base import RequestContext, Scorer
from .result import VariableResult


def label_variants(label: str) -> list[str]:
    """The label as written, first letter upper-cased, lower-cased; with and without a space."""
    stripped = label.strip() or label
    forms = [stripped, stripped[:1].upper() + stripped[1:], stripped.lower()]
    out: list[str] = []
    for form in forms:
        for v in (form, " " + form):
            if v not in out:
                out.append(v)
    return out


def variants_for(variable: Variable) -> list[tuple[str, str]]:
    """(category label, variant text) for every variant of every category, codebook order."""
    return [(lab, v) for lab in variable.labels for v in label_variants(lab)]


def exact_result(
    variable: Variable, variants: Sequence[tuple[str, str]], logprobs: Sequence[float]
) -> VariableResult:
    """Category probabilities from the variants' log-probabilities: summed, then normalised."""
    per_cat: dict[str, list[float]] = {lab: [] for lab in variable.labels}
    for (lab, _), lp in zip(variants, logprobs, strict=True):
        per_cat[lab].append(lp)
    mass = {lab: _logsumexp(lps) for lab, lps in per_cat.items()}
    top = max(mass.values())
    total = top + math.log(sum(math.exp(m - top) for m in mass.values()))
    probs = {lab: math.exp(m - total) for lab, m in mass.items()}
    label = max(variable.labels, key=lambda lab: probs[lab])  # first in codebook order on ties
    return VariableResult(
        label=label,
        probs=probs,
        other=0.0,
        raw=label,
        extra={"logprob": {lab: mass[lab] for lab in variable.labels}},
    )


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class ExactScorer(Scorer):
    """Every label variant scored after the prompt (the prefix cached by the engine)."""

    name = "exact"
    needs = ("continuations",)
    #: the default only where the prefix stays evaluated (over HTTP each variant pays it)
    default_needs = ("prefix_cache",)
    probes = True
    #: whole-label scores of a small model lean to some labels; content-free corrects it best
    #: without depending on the table (docs/concepts/calibration.md: the figures)
    calibration = "content-free"

    def requests(
        self,
        messages: list[Message],
        variable: Variable,
        params: CompletionParams,
        ctx: RequestContext,
    ) -> list[Request]:
        variants = tuple(v for _, v in variants_for(variable))
        return [ContinuationRequest(messages, variants, n_prefix=len(messages) - 1, head=ctx.head)]

    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        (scores,) = answers
        if not isinstance(scores, ContinuationScores):
            raise TypeError("exact scoring reads continuation scores")
        return exact_result(variable, variants_for(variable), scores.logprobs)
