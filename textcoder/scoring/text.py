"""Reading a category from a free-text answer."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..backends.base import Answer, Completion
from ..codebook import Category, Variable
from ..output import INVALID
from .base import Scorer
from .result import VariableResult

_STRIP = " \t\r\n\"'`*_.,:;!?()[]{}<>-"


def clean(answer: str) -> str:
    """The answer without surrounding quotes, markdown, punctuation and space, lower-cased."""
    return re.sub(r"\s+", " ", answer.strip().strip(_STRIP).strip()).lower()


def parse_label(answer: str, variable: Variable) -> Category | None:
    """The category an answer names, or None.

    Tried in order: the label exactly; ignoring case, quotes and punctuation; an alias;
    an answer that begins with exactly one label or alias as a whole word ("Positive. The
    author..."); a unique prefix of one label ("pos").
    """
    for cat in variable.categories:
        if answer == cat.label:
            return cat
    key = clean(answer)
    if not key:
        return None
    found = variable.find(key)
    if found is not None:
        return found
    starts = {
        cat.label
        for cat in variable.categories
        for name in (cat.label, *cat.aliases)
        if re.match(re.escape(name.lower()) + r"(?![\w])", key)
    }
    if len(starts) == 1:
        return variable.find(starts.pop())
    prefixed = [cat for cat in variable.categories if cat.label.lower().startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    return None


def label_of(answer: str, variable: Variable) -> str:
    """The category label an answer names, or `INVALID`."""
    cat = parse_label(answer, variable)
    return cat.label if cat is not None else INVALID


def only_completion(answers: Sequence[Answer]) -> Completion:
    """The one chat answer a single-request method gets."""
    if len(answers) != 1 or not isinstance(answers[0], Completion):
        raise TypeError("this scoring method reads exactly one chat completion")
    return answers[0]


class TextScorer(Scorer):
    """The answer's text parsed into a category: probability 1 for it, 0 for the rest."""

    name = "text"

    def read(self, answers: Sequence[Answer], variable: Variable) -> VariableResult:
        answer = only_completion(answers).text
        label = label_of(answer, variable)
        probs = {lab: 1.0 if lab == label else 0.0 for lab in variable.labels}
        other = 0.0 if label != INVALID else 1.0
        return VariableResult(label=label, probs=probs, other=other, raw=answer)
