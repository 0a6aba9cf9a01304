"""Scoring by sampling: n answers at temperature T; the probabilities are the vote shares.

For models and servers that give no logprobs (reasoning models, some providers).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..codebook import Variable
from .result import INVALID, VariableResult
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
