"""Reading a coded table (as `textcoder code` writes it) and its manifest into a `Sample`.

Rows whose gold code is empty, or whose request failed (empty label), are left out and
counted; a gold code that names no category is an error naming the file and row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import output
from .._exceptions import CodebookError, DataError, UsageError
from ..codebook import Codebook, Variable
from ..output import OUTSIDE
from ..tables import read_table
from .metrics import Sample


@dataclass(frozen=True)
class Coded:
    """One coded sample ready for evaluation, with what the report shows beside the figures."""

    name: str
    variable: Variable
    gold_column: str
    sample: Sample
    texts: list[str]
    ids: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    n_rows: int = 0
    n_failed: int = 0
    n_missing_gold: int = 0

    @property
    def labels(self) -> list[str]:
        return self.variable.labels


def manifest_path(path: str | Path) -> Path:
    """Where `textcoder code` writes a coded file's manifest."""
    p = Path(path)
    return p.with_name(p.name + ".manifest.json")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest beside a coded file, or {} when there is none."""
    mp = manifest_path(path)
    if not mp.is_file():
        return {}
    try:
        data = json.loads(mp.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{mp}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise DataError(f"{mp}: not a manifest (expected a JSON object)")
    return data


def load_coded(
    path: str | Path,
    gold_column: str,
    *,
    variable: str | None = None,
    codebook: Codebook | None = None,
    name: str | None = None,
) -> Coded:
    """Read a coded table and its manifest, ready to evaluate against `gold_column`."""
    df = read_table(path)
    manifest = read_manifest(path)
    return from_frame(
        df,
        gold_column,
        manifest=manifest,
        variable=variable,
        codebook=codebook,
        name=name or Path(path).name,
        source=str(path),
    )


def from_frame(
    df: pd.DataFrame,
    gold_column: str,
    *,
    manifest: dict[str, Any] | None = None,
    variable: str | None = None,
    codebook: Codebook | None = None,
    name: str = "coded",
    source: str | None = None,
) -> Coded:
    """A coded DataFrame (the CLI's columns) as a `Coded` sample against `gold_column`."""
    manifest = manifest or {}
    where = source or name
    var = _variable(manifest, variable, codebook, where)
    v = var.name
    if gold_column not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise DataError(f"{where}: no gold column {gold_column!r} (columns: {cols})")
    prob_cols = output.prob_columns(var)
    missing = [c for c in (v, *prob_cols) if c not in df.columns]
    if missing:
        raise DataError(f"{where}: not a coded table for {v!r}: no column(s) {', '.join(missing)}")
    probs = _probabilities(df, var, prob_cols)
    labels = [_text(x) for x in df[v]]
    gold_raw = [_text(x) for x in df[gold_column]]
    text_col = str(manifest.get("input", {}).get("text_column") or "text")
    id_col = manifest.get("input", {}).get("id_column")
    texts = [_text(x) for x in df[text_col]] if text_col in df.columns else [""] * len(df)
    if id_col and id_col in df.columns:
        ids = [_text(x) for x in df[id_col]]
    else:
        ids = [str(i + 1) for i in range(len(df))]

    k = len(var.labels)
    gold: list[int] = []
    pred: list[int] = []
    keep: list[int] = []
    failed = missing_gold = 0
    for i, (g, lab) in enumerate(zip(gold_raw, labels, strict=True)):
        if not g:
            missing_gold += 1
            continue
        cat = var.find(g)
        if cat is None:
            raise DataError(
                f"{where}: row {i + 1}: gold code {g!r} in column {gold_column!r} is not a "
                f"category of {v!r} ({', '.join(var.labels)})"
            )
        if not lab or np.isnan(probs[i]).any():
            failed += 1
            continue
        found = var.find(lab)
        gold.append(var.labels.index(cat.label))
        pred.append(k if found is None else var.labels.index(found.label))
        keep.append(i)
    if not keep:
        raise DataError(f"{where}: no row has both a gold code and a successful coding")
    rows = np.asarray(keep, dtype=np.int64)
    sample = Sample(
        gold=np.asarray(gold, dtype=np.int64),
        pred=np.asarray(pred, dtype=np.int64),
        probs=probs[rows],
        n_categories=k,
        scale=var.scale,
    )
    return Coded(
        name=name,
        variable=var,
        gold_column=gold_column,
        sample=sample,
        texts=[texts[i] for i in keep],
        ids=[ids[i] for i in keep],
        manifest=manifest,
        path=source,
        n_rows=len(df),
        n_failed=failed,
        n_missing_gold=missing_gold,
    )


def _probabilities(df: pd.DataFrame, var: Variable, prob_cols: list[str]) -> np.ndarray:
    """The categories' probabilities and the mass outside the scheme (`V_outside`; from a
    table of textcoder 0.1, `V_p_other`; else what the categories leave)."""
    cats = df[prob_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    legacy = f"{var.name}_p_other"
    col = output.column(var.name, OUTSIDE)
    if col not in df.columns and legacy in df.columns and legacy not in prob_cols:
        col = legacy
    if col in df.columns:
        outside = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    else:
        outside = np.clip(1.0 - cats.sum(axis=1), 0.0, 1.0)
    return np.column_stack([cats, outside])


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return str(x).strip()


def _variable(
    manifest: dict[str, Any],
    name: str | None,
    codebook: Codebook | None,
    where: str,
) -> Variable:
    """The variable to evaluate: from the codebook given, the manifest's codebook file (for its
    `scale`), or the manifest's category list."""
    if codebook is None:
        path = manifest.get("codebook", {}).get("path")
        if path and Path(path).is_file():
            try:
                codebook = Codebook.from_yaml(path)
            except CodebookError:
                codebook = None
            if codebook is not None and codebook.sha256 != manifest["codebook"].get("sha256"):
                codebook = None  # changed since coding: trust only the manifest's labels
    if codebook is not None:
        names = [v.name for v in codebook.variables]
    else:
        listed = manifest.get("codebook", {}).get("variables") or {}
        if not listed:
            raise DataError(
                f"{where}: no manifest beside it ({manifest_path(where).name}); "
                "give the codebook with --codebook"
            )
        names = list(listed)
    if name is None:
        if len(names) != 1:
            raise UsageError(
                f"{where}: several variables ({', '.join(names)}); pick one with --variable"
            )
        name = names[0]
    if name not in names:
        raise UsageError(f"{where}: no variable {name!r} (variables: {', '.join(names)})")
    if codebook is not None:
        return codebook.variable(name)
    return Variable(name=name, categories=listed[name])
