"""Reading a category from a free-text answer."""

from __future__ import annotations

import re

from ..codebook import Category, Variable

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
