"""Scoring by sampling: n answers at temperature T; the probabilities are the vote shares.

For models and servers that give no logprobs (reasoning models, some providers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..backends.base import Answer, ChatRequest, Completion, CompletionParams
from ..codebook import Variable
from ..output import INVALID
from .base import RequestContext, Scorer, Settings
from .result import VariableResult
from .text import parse_label


def vote_shares(answers: Sequence[str], variable: Variable) -> VariableResult:
    """Each answer parsed into a category; shares per category, unparseable answers in `other`."""
    counts = dict.fromkeys(variable.labels, 0)
    invalid = 0
    for answer in answers:
        cat = parse_label(answer, variable)
        if cat is None:
            invalid += 1
        else:
            counts[cat.label] += 1
    n = len(answers)
    if n == 0:
        return VariableResult(
            INVALID, dict.fromkeys(variable.labels, 0.0), 1.0, error="no answers sampled"
        )
    probs = {k: v / n for k, v in counts.items()}
    best = max(counts, key=lambda k: counts[k])  # first in codebook order on ties
    label = best if counts[best] > 0 else INVALID
    majority = next(
        (a for a in answers if (c := parse_label(a, variable)) and c.label == label), ""
    )
    return VariableResult(
        label=label,
        probs=probs,
        other=invalid / n,
        raw=majority or (answers[0] if answers else ""),
        extra={"n": n},
    )


def choices(answers: Sequence[Answer]) -> list[str]:
    """Every choice's text across the chat answers (a request with `n` gives several)."""
    out: list[str] = []
    for a in answers:
        if isinstance(a, Completion):
            out.extend(a.choices or (a.text,))
    return out


class SampleScorer(Scorer):
    """n answers at temperature T (default 1); the probabilities are the vote shares."""

    name = "sample"
    columns = ("n",)
    probes = True

    def params(self, settings: Settings) -> CompletionParams:
        temperature = settings.temperature if settings.temperature is not None else 1.0
        return replace(super().params(settings), temperature=temperature, n=settings.n)

    def expand(self, request: ChatRequest, ctx: RequestContext) -> Sequence[ChatRequest]:
        """One request asking for n choices; n requests (seeds counted up) where the engine
        ignores `n`."""
        params = request.params
        if params.n <= 1 or ctx.capabilities.n:
            return [request]
        return [
            ChatRequest(
                request.messages,
                replace(params, n=1, seed=None if params.seed is None else params.seed + i),
            )
            for i in range(params.n)
        ]

    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        return vote_shares(choices(answers), variable)
