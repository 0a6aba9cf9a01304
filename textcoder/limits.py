"""The valid range of every numeric setting of a run, checked in one place: `Coder` checks
its arguments here before anything starts, so the library and every command refuse a bad
value with one line naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._exceptions import UsageError


@dataclass(frozen=True)
class Range:
    """A closed or half-open range; `above`: the low end itself is not allowed."""

    low: float
    high: float = math.inf
    above: bool = False
    integer: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        low_ok = value > self.low if self.above else value >= self.low
        return low_ok and value <= self.high

    def describe(self) -> str:
        low = f"above {self.low:g}" if self.above else f"at least {self.low:g}"
        if self.high != math.inf:
            low = f"from {self.low:g} to {self.high:g}"
        return f"{low} (a whole number)" if self.integer else f"a number {low}"


#: every numeric setting of a coding run, by its argument name (`--max-tokens` on the CLI)
RANGES: dict[str, Range] = {
    "concurrency": Range(1, integer=True),
    "max_tokens": Range(1, integer=True),
    "n": Range(1, integer=True),
    "max_retries": Range(0, integer=True),
    "timeout": Range(0, above=True),
    "rpm": Range(0, above=True),
    "tpm": Range(0, above=True),
    "temperature": Range(0, 2),
    "threshold": Range(0, 1),
    "digits": Range(0, integer=True),
}


def check_settings(**values: float | None) -> None:
    """Raise `UsageError` on the first value outside its range (None: not given)."""
    for name, value in values.items():
        rng = RANGES[name]
        if value is not None and not rng.holds(value):
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be {rng.describe()}, not {value!r}")
