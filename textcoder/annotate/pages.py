"""Rendering the app's pages: Jinja2 templates shipped in the package, autoescaped, so a text
holding `<script>` is shown as text."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape

if TYPE_CHECKING:
    from .agreement import Estimate


def fmt(est: Estimate | None, digits: int = 3) -> str:
    """`0.812 [0.771, 0.850]`, or `n/a` where undefined."""
    if est is None or est.value is None:
        return "n/a"
    if est.ci_low is None or est.ci_high is None:
        return f"{est.value:.{digits}f}"
    return f"{est.value:.{digits}f} [{est.ci_low:.{digits}f}, {est.ci_high:.{digits}f}]"


def num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("textcoder.annotate", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["est"] = fmt
    env.filters["num"] = num
    return env


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(**context)
