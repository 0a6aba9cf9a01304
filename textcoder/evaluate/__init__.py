"""Agreement with human codes and calibration of the probabilities, with bootstrap intervals,
for one or several coded files; a terminal table, `metrics.json`, and an HTML report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..calibration import uncalibrated
from ..codebook import Codebook
from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap
from .compare import comparison_rows, rich_table
from .evaluation import evaluate
from .load import Coded, from_frame, load_coded, read_coded
from .metrics import Sample

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Coded",
    "Sample",
    "bootstrap",
    "comparison_rows",
    "evaluate",
    "evaluate_files",
    "from_frame",
    "load_coded",
    "read_coded",
    "rich_table",
    "write_metrics",
    "write_report",
]


def evaluate_files(
    paths: Sequence[str | Path],
    gold_column: str,
    *,
    variable: str | None = None,
    codebook: Codebook | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    gold_file: str | Path | None = None,
    id_column: str | None = None,
) -> list[tuple[Coded, dict[str, Any]]]:
    """Load and evaluate each coded file against `gold_column` (a column of each file, or of
    `gold_file` joined on the id column)."""
    out = []
    for p in paths:
        table, manifest, notes = read_coded(
            p, gold_column, gold_file=gold_file, id_column=id_column
        )
        coded = from_frame(
            table,
            gold_column,
            manifest=manifest,
            variable=variable,
            codebook=codebook,
            name=Path(p).name,
            source=str(p),
            id_column=id_column,
        )
        coded = replace(
            coded,
            notes=(*notes, *coded.notes),
            gold_file=None if gold_file is None else str(gold_file),
            id_column=id_column,
        )
        for c in with_raw(coded, table, gold_column, codebook):
            out.append((c, evaluate(c, resamples=resamples, seed=seed)))
    return out


def with_raw(
    coded: Coded, table: pd.DataFrame, gold_column: str, codebook: Codebook | None = None
) -> list[Coded]:
    """A calibrated file's raw probabilities as their own sample, shown beside the calibrated
    ones, `FILE (raw)` then `FILE (METHOD)`; just `coded` for an uncalibrated file."""
    raw_table = uncalibrated(table, coded.variable)
    if raw_table is None:
        return [coded]
    method = str(coded.manifest.get("calibration", {}).get("method", "calibrated"))
    raw = from_frame(
        raw_table,
        gold_column,
        manifest=coded.manifest,
        variable=coded.variable.name,
        codebook=codebook,
        name=f"{coded.name} (raw)",
        source=coded.path,
    )
    raw = replace(raw, gold_file=coded.gold_file, id_column=coded.id_column, calibration="raw")
    return [raw, replace(coded, name=f"{coded.name} ({method})")]


def write_metrics(results: Sequence[dict[str, Any]], path: str | Path) -> None:
    """`metrics.json`: always `{"files": [...]}`, one entry per column of the printed table
    (a calibrated file gives two: its raw probabilities, then the calibrated ones)."""
    data: dict[str, Any] = {"files": list(results)}
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_report(evaluated: Sequence[tuple[Coded, dict[str, Any]]], path: str | Path) -> None:
    """The self-contained HTML report (imports matplotlib only when asked for)."""
    from .report import render_report

    Path(path).write_text(render_report(evaluated), encoding="utf-8")
