"""Category probabilities from the answer's token logprobs (the seed tutorial's method).

The first answer token's `top_logprobs` are mapped to categories by normalising token
variants (`positive`, `Positive`, ` positive`, `_positive`, `-positive`, `"positive`) and
summed per category; a token that begins exactly one label counts for it (multi-token
labels). Where several labels share the token the answer began with, the next generated
position's alternatives split that mass, and so on. The mass no category claims is `other`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

from ..backends.base import Answer, CompletionParams, TokenLogprob
from ..codebook import Variable
from .base import Scorer, Settings
from .result import VariableResult, normalise
from .text import label_of, only_completion

_LEAD = re.compile(r"^[\s_\u2581\u0120\-'\"`*]+")


_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1 << 16)  # tokens repeat from row to row: a run normalises each once
def _norm(s: str) -> str:
    """A token or label as compared: leading space/underscore/dash/quote marks gone, lower case."""
    return _SPACES.sub(" ", _LEAD.sub("", s)).lower()


@lru_cache(maxsize=1 << 16)
def _claims(cand: str, forms: tuple[tuple[str, str], ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The labels `cand` is (perhaps followed by more), and those it is the start of."""
    full = frozenset(label for label, form in forms if _matches(cand, form))
    partial = frozenset(label for label, form in forms if form.startswith(cand) and form != cand)
    return full, partial


def category_mass(tokens: Sequence[TokenLogprob], variable: Variable) -> dict[str, float]:
    """Probability mass per category from the answer's token logprobs (not normalised)."""
    forms = tuple(
        (cat.label, _norm(n)) for cat in variable.categories for n in (cat.label, *cat.aliases)
    )
    mass = {label: 0.0 for label in variable.labels}
    if tokens:
        _walk(tokens, 0, "", 1.0, forms, mass)
    return mass


def _walk(
    tokens: Sequence[TokenLogprob],
    pos: int,
    consumed: str,
    weight: float,
    forms: tuple[tuple[str, str], ...],
    mass: dict[str, float],
) -> None:
    step = tokens[pos]
    alternatives = step.top or ((step.token, step.logprob),)
    seen: set[str] = set()
    for tok, logprob in alternatives:
        if tok in seen:  # some servers repeat a token; count it once
            continue
        seen.add(tok)
        p = weight * math.exp(logprob)
        cand = _norm(consumed + tok)
        if not cand:
            continue
        full_, partial_ = _claims(cand, forms)
        full, partial = set(full_), set(partial_)
        is_generated = tok == step.token
        if partial - full and is_generated and pos + 1 < len(tokens):
            if len(partial | full) == 1:
                mass[(partial | full).pop()] += p
            else:
                _walk(tokens, pos + 1, consumed + tok, p, forms, mass)
        elif len(full) == 1 and not (partial - full):
            mass[full.pop()] += p
        elif not full and len(partial) == 1:
            mass[partial.pop()] += p
        elif len(full) == 1 and is_generated and pos + 1 >= len(tokens):
            mass[full.pop()] += p  # the answer ended on a full label that others extend


def _matches(cand: str, form: str) -> bool:
    """`cand` is the label `form`, possibly followed by punctuation or more words."""
    if not cand.startswith(form):
        return False
    rest = cand[len(form) :]
    return not rest or not (rest[0].isalnum())


class LogprobsScorer(Scorer):
    """The answer's first tokens' top_logprobs, summed per category (see the module)."""

    name = "logprobs"
    needs = ("logprobs", "top_logprobs")

    def params(self, settings: Settings) -> CompletionParams:
        return replace(super().params(settings), logprobs=True)

    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        completion = only_completion(answers)
        label = label_of(completion.text, variable)
        if not completion.tokens:
            return VariableResult(
                label=label,
                probs=dict.fromkeys(variable.labels, 0.0),
                other=1.0,
                raw=completion.text,
                error="the server returned no logprobs; use --scoring text",
            )
        mass = category_mass(completion.tokens, variable)
        probs, other = normalise(mass, max(0.0, 1.0 - sum(mass.values())))
        return VariableResult(label=label, probs=probs, other=other, raw=completion.text)
