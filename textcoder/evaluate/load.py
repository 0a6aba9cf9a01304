"""Reading a coded table (as `textcoder code` writes it, or any table with a label column) and
its manifest into a `Coded` sample.

Rows whose gold code is empty, or whose request failed (empty label), are left out and
counted; a gold code that names no category is an error naming the file and row. Human codes
can come from another file (`gold_file`), joined on the id column. Without a manifest or a
codebook the variable and its categories are inferred from the columns, and a note says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._exceptions import CodebookError, DataError, UsageError
from ..codebook import Codebook, Variable
from ..tables import read_table
from .columns import (
    INVALID,
    LEGACY_INVALID,
    label_column,
    other_column,
    prob_column,
    prob_prefix,
)
from .metrics import FloatArray, Sample

__all__ = ["INVALID", "Coded", "from_frame", "join_gold", "load_coded", "read_coded"]


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
    notes: tuple[str, ...] = ()
    #: where the human codes came from when not from the table itself (the report's
    #: prevalence reads them the same way)
    gold_file: str | None = None
    id_column: str | None = None
    #: "raw" for the model's own probabilities of a calibrated file, else the file's method
    calibration: str = "none"

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


def read_coded(
    path: str | Path,
    gold_column: str,
    *,
    gold_file: str | Path | None = None,
    id_column: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], tuple[str, ...]]:
    """A coded table with the gold file's `gold_column` joined in (when given), its manifest,
    and a note on the join."""
    df = read_table(path)
    manifest = read_manifest(path)
    if gold_file is None:
        return df, manifest, ()
    key = id_column or manifest.get("input", {}).get("id_column")
    df, note = join_gold(df, read_table(gold_file), gold_column, key, str(path), str(gold_file))
    return df, manifest, (note,)


def join_gold(
    coded: pd.DataFrame,
    gold: pd.DataFrame,
    gold_column: str,
    id_column: str | None,
    where: str,
    gold_where: str,
) -> tuple[pd.DataFrame, str]:
    """`coded` with `gold_column` taken from `gold`, matched on `id_column` (ids compared as
    text); rows the gold file lacks get an empty code. Returns the frame and a one-line note."""
    if id_column is None:
        common = [c for c in ("id",) if c in coded.columns and c in gold.columns]
        if not common:
            raise UsageError(
                f"{where}: joining {gold_where} needs the id column both tables hold; "
                "give it with --id-column"
            )
        id_column = common[0]
    for table, name in ((coded, where), (gold, gold_where)):
        if id_column not in table.columns:
            raise DataError(f"{name}: no id column {id_column!r} to join on")
    if gold_column not in gold.columns:
        cols = ", ".join(map(str, gold.columns))
        raise DataError(f"{gold_where}: no gold column {gold_column!r} (columns: {cols})")
    gold_ids = [_text(x) for x in gold[id_column]]
    seen: dict[str, int] = {}
    for i, key in enumerate(gold_ids):
        if key in seen:
            raise DataError(
                f"{gold_where}: rows {seen[key] + 1} and {i + 1}: id {key!r} appears twice"
            )
        seen[key] = i
    codes = dict(zip(gold_ids, (_text(x) for x in gold[gold_column]), strict=True))
    coded_ids = [_text(x) for x in coded[id_column]]
    out = coded.drop(columns=[gold_column], errors="ignore").copy()
    out[gold_column] = [codes.get(k, "") for k in coded_ids]
    matched = len(set(coded_ids) & set(codes))
    with_code = sum(1 for k in coded_ids if codes.get(k, ""))
    unmatched = len(codes) - matched
    note = (
        f"{where}: {gold_column!r} joined from {gold_where} on {id_column!r}: "
        f"{with_code} of {len(out)} rows have a code"
        + (f"; {unmatched} of its {len(codes)} rows match no row here" if unmatched else "")
    )
    return out, note


def load_coded(
    path: str | Path,
    gold_column: str,
    *,
    variable: str | None = None,
    codebook: Codebook | None = None,
    name: str | None = None,
    gold_file: str | Path | None = None,
    id_column: str | None = None,
) -> Coded:
    """Read a coded table and its manifest, ready to evaluate against `gold_column` (a column
    of the table, or of `gold_file` joined on the id column)."""
    df, manifest, notes = read_coded(path, gold_column, gold_file=gold_file, id_column=id_column)
    coded = from_frame(
        df,
        gold_column,
        manifest=manifest,
        variable=variable,
        codebook=codebook,
        name=name or Path(path).name,
        source=str(path),
        id_column=id_column,
    )
    return replace(coded, notes=(*notes, *coded.notes)) if notes else coded


def from_frame(
    df: pd.DataFrame,
    gold_column: str,
    *,
    manifest: dict[str, Any] | None = None,
    variable: str | None = None,
    codebook: Codebook | None = None,
    name: str = "coded",
    source: str | None = None,
    id_column: str | None = None,
) -> Coded:
    """A coded DataFrame (the CLI's columns) as a `Coded` sample against `gold_column`."""
    manifest = manifest or {}
    where = source or name
    if gold_column not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise DataError(f"{where}: no gold column {gold_column!r} (columns: {cols})")
    var, notes = _variable(manifest, variable, codebook, where, df, gold_column)
    probs, has_probs = _probabilities(df, var, where)
    if not has_probs:
        notes.append(
            f"{where}: no probability columns for {var.name!r}: agreement only "
            "(Brier, ECE and the other mass are not available)"
        )
    text_col = str(manifest.get("input", {}).get("text_column") or "text")
    id_col = manifest.get("input", {}).get("id_column") or id_column
    texts = [_text(x) for x in df[text_col]] if text_col in df.columns else [""] * len(df)
    if id_col and id_col in df.columns:
        ids = [_text(x) for x in df[id_col]]
    else:
        ids = [str(i + 1) for i in range(len(df))]
    gold, pred, keep, failed, missing_gold = _codes(df, var, gold_column, probs, has_probs, where)
    if not keep:
        raise DataError(f"{where}: no row has both a gold code and a successful coding")
    rows = np.asarray(keep, dtype=np.int64)
    sample = Sample(
        gold=np.asarray(gold, dtype=np.int64),
        pred=np.asarray(pred, dtype=np.int64),
        probs=probs[rows],
        n_categories=len(var.labels),
        scale=var.scale,
        has_probs=has_probs,
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
        notes=tuple(notes),
        calibration=str(manifest.get("calibration", {}).get("method", "none")),
    )


def _probabilities(df: pd.DataFrame, var: Variable, where: str) -> tuple[FloatArray, bool]:
    """The (n, K+1) probabilities (categories, then other), and whether the table has any;
    without an other column, the other mass is what the categories leave."""
    v = var.name
    cat_cols = [prob_column(v, lab) for lab in var.labels]
    outside = other_column(v, [str(c) for c in df.columns])
    if outside in cat_cols:  # a category called `other`: its own column, not the outside mass
        outside = other_column(v)
    present = [c for c in (*cat_cols, outside) if c in df.columns]
    if not present:
        return np.full((len(df), len(var.labels) + 1), np.nan), False
    missing = [c for c in (label_column(v), *cat_cols) if c not in df.columns]
    if missing:
        raise DataError(f"{where}: not a coded table for {v!r}: no column(s) {', '.join(missing)}")
    cats = df[cat_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if outside in df.columns:
        other = pd.to_numeric(df[outside], errors="coerce").to_numpy(dtype=float)
    else:
        other = np.clip(1.0 - cats.sum(axis=1), 0.0, 1.0)
    probs = np.column_stack([cats, other])
    # a table written with few digits (`--digits`) sums to 1 only within its rounding
    total = probs.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, probs / total, probs), True


def _codes(
    df: pd.DataFrame,
    var: Variable,
    gold_column: str,
    probs: FloatArray,
    has_probs: bool,
    where: str,
) -> tuple[list[int], list[int], list[int], int, int]:
    """Gold and predicted codes of the rows that have both, those rows, and the counts of
    failed rows and rows without a gold code."""
    v = var.name
    if label_column(v) not in df.columns:
        raise DataError(f"{where}: not a coded table for {v!r}: no column {label_column(v)}")
    labels = [_text(x) for x in df[label_column(v)]]
    gold_raw = [_text(x) for x in df[gold_column]]
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
        if not lab or (has_probs and np.isnan(probs[i]).any()):
            failed += 1
            continue
        found = var.find(lab)
        gold.append(var.labels.index(cat.label))
        pred.append(k if found is None else var.labels.index(found.label))
        keep.append(i)
    return gold, pred, keep, failed, missing_gold


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return str(x).strip()


def _variable(
    manifest: dict[str, Any],
    name: str | None,
    codebook: Codebook | None,
    where: str,
    df: pd.DataFrame,
    gold_column: str,
) -> tuple[Variable, list[str]]:
    """The variable to evaluate: from the codebook given, the manifest's codebook file (for its
    `scale`), the manifest's category list, or else inferred from the table's columns."""
    if codebook is None:
        codebook = _manifest_codebook(manifest)
    if codebook is not None:
        names = [v.name for v in codebook.variables]
    else:
        listed = manifest.get("codebook", {}).get("variables") or {}
        if not listed:
            var, note = infer_variable(df, name, gold_column, where)
            return var, [note]
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
        return codebook.variable(name), []
    return Variable(name=name, categories=listed[name]), []


def _manifest_codebook(manifest: dict[str, Any]) -> Codebook | None:
    """The codebook file the manifest names, if it is still there and unchanged."""
    path = manifest.get("codebook", {}).get("path")
    if not path or not Path(path).is_file():
        return None
    try:
        book = Codebook.from_yaml(path)
    except CodebookError:
        return None
    if book.sha256 != manifest["codebook"].get("sha256"):
        return None  # changed since coding: trust only the manifest's labels
    return book


def infer_variable(
    df: pd.DataFrame, name: str | None, gold_column: str, where: str
) -> tuple[Variable, str]:
    """A variable read off a plain table: the label column (`name`, or the one column with
    probability columns beside it), its categories from those columns and the labels present
    (nominal); and the line that says what was inferred."""
    cols = [str(c) for c in df.columns]
    if name is None:
        found = [
            c
            for c in cols
            if c != gold_column and any(o.startswith(prob_prefix(c)) for o in cols if o != c)
        ]
        if not found:
            raise DataError(
                f"{where}: no manifest beside it and no probability columns "
                f"({prob_prefix('VAR')}<category>): name the label column with --variable, "
                "or give the codebook with --codebook"
            )
        if len(found) > 1:
            raise UsageError(
                f"{where}: several variables ({', '.join(found)}); pick one with --variable"
            )
        name = found[0]
    if label_column(name) not in cols:
        raise DataError(f"{where}: no column {label_column(name)!r} holding the labels")
    slugs = [
        c[len(prob_prefix(name)) :]
        for c in cols
        if c.startswith(prob_prefix(name)) and c != other_column(name, cols)
    ]
    present = _labels_present(df, [label_column(name), gold_column])
    if slugs:
        by_column = {prob_column(name, lab): lab for lab in present}
        labels = [by_column.get(prob_prefix(name) + s, s) for s in slugs]
        source = "its probability columns"
    else:
        labels = sorted(present, key=str.lower)
        source = f"the labels in {label_column(name)!r} and {gold_column!r}"
    if len(labels) < 2:
        raise DataError(f"{where}: {name!r} needs at least two categories; found {labels}")
    var = Variable.model_validate({"name": name, "categories": labels})
    note = (
        f"{where}: no manifest and no --codebook; evaluating {name!r} as nominal with "
        f"categories {', '.join(labels)} (from {source})"
    )
    return var, note


def _labels_present(df: pd.DataFrame, columns: list[str]) -> list[str]:
    """The distinct non-empty labels in `columns` (first spelling of each, ignoring case),
    leaving out the `invalid` marker."""
    seen: dict[str, str] = {}
    for col in columns:
        for x in df[col]:
            lab = _text(x)
            if lab and lab.lower() not in (INVALID, LEGACY_INVALID) and lab.lower() not in seen:
                seen[lab.lower()] = lab
    return list(seen.values())
