"""The coded value of one variable for one text: label, probabilities, raw answer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..output import INVALID


@dataclass(frozen=True)
class VariableResult:
    """One variable's code for one text.

    `probs` has one entry per category (codebook order); `other` is the mass on answers
    that name no category, so `sum(probs.values()) + other == 1`. With calibration on,
    `probs` and `label` are calibrated and `raw_probs` keeps the model's own probabilities.
    """

    label: str
    probs: dict[str, float]
    other: float = 0.0
    raw: str = ""
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    #: the model's own probabilities where `probs` are calibrated; None when they are not
    raw_probs: dict[str, float] | None = None

    @property
    def confidence(self) -> float:
        """The largest category probability."""
        return max(self.probs.values(), default=0.0)

    @property
    def entropy(self) -> float:
        """Shannon entropy of the distribution (categories and `other`), in nats.

        For a multi-label variable, whose categories are independent yes/no questions, the
        sum of the questions' entropies.
        """
        if self.extra.get("multi"):
            return sum(_h(p) + _h(1 - p) for p in self.probs.values() if 0 <= p <= 1)
        ps = [*self.probs.values(), self.other]
        return -sum(p * math.log(p) for p in ps if p > 0)


def _h(p: float) -> float:
    return -p * math.log(p) if p > 0 else 0.0


def normalise(probs: dict[str, float], other: float) -> tuple[dict[str, float], float]:
    """Clip negatives and rescale so the categories and `other` sum to exactly 1."""
    clipped = {k: max(0.0, v) for k, v in probs.items()}
    other = max(0.0, other)
    total = sum(clipped.values()) + other
    if total <= 0:
        return {k: 0.0 for k in clipped}, 1.0
    return {k: v / total for k, v in clipped.items()}, other / total


def with_fallback(result: VariableResult) -> VariableResult:
    """An `invalid` answer falls back to the most probable category where probabilities exist."""
    if result.label != INVALID or result.error:
        return result
    best = max(result.probs, key=lambda k: result.probs[k], default=None)
    if best is None or not result.probs[best] > 0:
        return result
    return VariableResult(
        label=best,
        probs=result.probs,
        other=result.other,
        raw=result.raw,
        error=result.error,
        extra={**result.extra, "fallback": True},
    )


def ordinal_summary(probs: dict[str, float], labels: list[str]) -> tuple[float, int]:
    """Expected position (1-based) and median position of a distribution over ordered labels.

    Both are taken over the categories only (renormalised without `other`).
    """
    ps = [max(0.0, probs.get(lab, 0.0)) for lab in labels]
    total = sum(ps)
    if not total > 0:
        return float("nan"), 0
    ps = [p / total for p in ps]
    expected = sum((i + 1) * p for i, p in enumerate(ps))
    cum = 0.0
    for i, p in enumerate(ps):
        cum += p
        if cum >= 0.5 - 1e-12:
            return expected, i + 1
    return expected, len(ps)
