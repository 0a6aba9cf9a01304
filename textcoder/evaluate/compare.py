"""Several evaluations side by side: one row per metric, one column per coded file, for the
terminal (rich) and the report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

ROWS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro F1"),
    ("weighted_f1", "weighted F1"),
    ("cohen_kappa", "Cohen's kappa"),
    ("krippendorff_alpha", "Krippendorff's alpha"),
    ("brier", "Brier (lower is better)"),
    ("ece", "ECE, 15 bins (lower is better)"),
    ("invalid_share", "share invalid"),
    ("mean_other", "mean other mass"),
)


def fmt(est: dict[str, Any] | None, digits: int = 3) -> str:
    """`0.812 [0.771, 0.850]`, or `n/a` where undefined."""
    if not est or est.get("value") is None:
        return "n/a"
    v = f"{est['value']:.{digits}f}"
    if est.get("ci_low") is None or est.get("ci_high") is None:
        return v
    return f"{v} [{est['ci_low']:.{digits}f}, {est['ci_high']:.{digits}f}]"


def comparison_rows(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(row name, one cell per result): the headline metrics, then F1 per category."""
    rows: list[tuple[str, list[str]]] = [("texts evaluated", [str(r["n"]) for r in results])]
    for key, title in ROWS:
        if key == "krippendorff_alpha":
            levels = {r[key].get("level", "nominal") for r in results}
            title = f"{title} ({'/'.join(sorted(levels))})"
        rows.append((title, [fmt(r.get(key)) for r in results]))
    labels: list[str] = []
    for r in results:
        labels += [lab for lab in r["labels"] if lab not in labels]
    for lab in labels:
        rows.append(
            (
                f"F1 {lab}",
                [
                    fmt(r["per_category"][lab]["f1"]) if lab in r["per_category"] else ""
                    for r in results
                ],
            )
        )
    return rows


def rich_table(results: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """The comparison as a rich table (95% bootstrap intervals in brackets)."""
    table = Table(title=title, caption="95% bootstrap intervals (resampling texts) in brackets")
    table.add_column("metric", style="bold")
    for r in results:
        table.add_column(str(r["name"]), justify="right")
    for name, cells in comparison_rows(results):
        table.add_row(name, *cells)
    return table
