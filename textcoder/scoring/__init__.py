"""From an engine's answer to category probabilities: one scorer per method, one registry.

Each scorer says what it needs from an engine (`needs`, `Capabilities` flags), what it asks
in a request (`params`, `requests`), how answers become probabilities (`read`) and which
extra columns it writes (`columns`). Nothing outside this package branches on a method.
"""

from __future__ import annotations

from ..backends.base import Capabilities, Completion
from ..codebook import Variable
from ..output import INVALID
from .base import RequestContext, Scorer, Settings
from .exact import ExactScorer
from .joint import JointScorer
from .logprobs import LogprobsScorer, category_mass
from .result import VariableResult, normalise
from .sample import SampleScorer
from .text import TextScorer, parse_label

#: every method, in the order a default is chosen: the first an engine supports
SCORERS: dict[str, Scorer] = {
    s.name: s for s in (ExactScorer(), LogprobsScorer(), SampleScorer(), TextScorer())
}
METHODS = tuple(SCORERS)


def get_scorer(name: str) -> Scorer:
    """The scorer of a method's name; an unknown name is a `KeyError` listing the methods."""
    if name not in SCORERS:
        raise KeyError(f"unknown scoring {name!r}; one of {', '.join(METHODS)}")
    return SCORERS[name]


def score_completion(completion: Completion, variable: Variable, method: str) -> VariableResult:
    """One variable from one chat answer, read by `method`'s scorer."""
    return get_scorer(method).read([completion], variable)


def default_scorer(capabilities: Capabilities) -> Scorer:
    """The best method that suits an engine: `exact` (where the prefix stays cached),
    else `logprobs`, else `sample`."""
    return next(s for s in SCORERS.values() if s.suits(capabilities))


def supported_methods(capabilities: Capabilities) -> list[str]:
    """The methods an engine with these capabilities can use."""
    return [name for name, s in SCORERS.items() if s.supported(capabilities)]


__all__ = [
    "INVALID",
    "METHODS",
    "SCORERS",
    "JointScorer",
    "RequestContext",
    "Scorer",
    "Settings",
    "VariableResult",
    "category_mass",
    "default_scorer",
    "get_scorer",
    "normalise",
    "parse_label",
    "score_completion",
    "supported_methods",
]
