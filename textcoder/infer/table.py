"""Reading a coded table and the human codes into arrays the estimators take: for each
category, the model's prediction and the human code's indicator, which rows are coded, and
their inclusion probabilities; with one-line warnings about the design."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._exceptions import DataError, UsageError
from ..codebook import Codebook, Variable
from ..evaluate.load import read_manifest
from ..tables import read_table
from . import columns as col
from .inclusion import Design, Missing, inclusion

#: fewer human codes than this in a category earns a warning (Törnberg 2024: 20-30)
MIN_PER_CATEGORY = 30
#: fewer human codes than this in all gives no interval at all (a variance needs two)
MIN_CODED = 2


@dataclass
class Prepared:
    """One variable of a coded table, ready for the estimators (rows the model failed on are
    left out and counted)."""

    variable: Variable
    frame: pd.DataFrame  # the rows kept, in table order
    f: npt.NDArray[np.float64]  # (rows, categories) model prediction
    y: npt.NDArray[np.float64]  # (rows, categories) human indicator, 0 where not coded
    r: npt.NDArray[np.bool_]  # (rows,) human-coded
    pi: npt.NDArray[np.float64]  # (rows,) inclusion probability (meaningful where r)
    equal_pi: bool  # True when every coded row has the same probability (a simple random sample)
    warnings: list[str] = field(default_factory=list)
    n_failed: int = 0
    design: Design | None = None  # how the probabilities were found

    @property
    def labels(self) -> list[str]:
        return self.variable.labels


@dataclass(frozen=True)
class Source:
    """Where the human codes come from: a column of the table, or a file joined on an id."""

    gold: str | None = None
    gold_file: str | None = None
    id_column: str | None = None


def load(
    path: str | Path,
    source: Source,
    *,
    variable: str | None = None,
    codebook: Codebook | None = None,
    known: Variable | None = None,
    missing: Missing = "adjust",
) -> Prepared:
    """Read `path` (with or without its manifest) and its human codes; `known` is the
    variable when the caller has it already (the evaluation report); `missing` says what to
    do with drawn rows that have no human code (refuse, or adjust for them)."""
    df = read_table(path)
    manifest = read_manifest(path)
    var = known or resolve_variable(df, manifest, variable, codebook, str(path))
    warnings: list[str] = []
    id_col = source.id_column or manifest.get("input", {}).get("id_column") or "id"
    if source.gold_file:
        df = join_gold(df, source, var, id_col, str(path), warnings)
        gold_col = "__gold__"
    elif source.gold:
        gold_col = source.gold
        if gold_col not in df.columns:
            raise DataError(f"{path}: no column {gold_col!r} of human codes")
    else:
        raise UsageError("give the human codes with --gold COLUMN or --gold-file FILE")
    return prepare(df, var, gold_col, str(path), warnings, missing)


def resolve_variable(
    df: pd.DataFrame,
    manifest: dict[str, Any],
    name: str | None,
    codebook: Codebook | None,
    where: str,
) -> Variable:
    """The variable and its categories: from the codebook, the manifest, or the table's
    `V_p_<category>` columns."""
    if codebook is not None:
        names = [v.name for v in codebook.variables]
        name = _pick(name, names, where)
        return codebook.variable(name)
    listed = manifest.get("codebook", {}).get("variables") or {}
    if listed:
        name = _pick(name, list(listed), where)
        return Variable.model_validate({"name": name, "categories": list(listed[name])})
    found = [
        str(c)
        for c in df.columns
        if any(str(o).startswith(col.prob_prefix(str(c))) for o in df.columns)
    ]
    if not found or (name is not None and name not in found):
        raise DataError(
            f"{where}: no manifest beside it and no {col.prob_prefix(name or 'V')}<category> "
            "columns: give the codebook with --codebook"
        )
    name = _pick(name, found, where)
    prefix = col.prob_prefix(name)
    outside, legacy = col.outside_columns(name)
    skip = legacy if outside not in df.columns else None  # a 0.1 table: V_p_other is no category
    labels = [
        str(c)[len(prefix) :] for c in df.columns if str(c).startswith(prefix) and str(c) != skip
    ]
    if len(labels) < 2:
        raise DataError(f"{where}: no {prefix}<category> columns for {name!r}; give --codebook")
    return Variable.model_validate({"name": name, "categories": labels})


def _pick(name: str | None, names: list[str], where: str) -> str:
    if name is None:
        if len(names) != 1:
            listed = ", ".join(names) or "none found"
            raise UsageError(f"{where}: pick the variable with --variable ({listed})")
        return names[0]
    if name not in names:
        raise UsageError(f"{where}: no variable {name!r} (variables: {', '.join(names)})")
    return name


def join_gold(
    df: pd.DataFrame, source: Source, var: Variable, id_col: str, where: str, warnings: list[str]
) -> pd.DataFrame:
    """The table with the gold file's codes (and its `sample_prob`, where the table has none)
    joined on the id column."""
    assert source.gold_file is not None
    gold = read_table(source.gold_file)
    code_col = source.gold or next(
        (c for c in (f"{var.name}_human", var.name, "gold") if c in gold.columns), None
    )
    for c, what in ((id_col, "id"), (code_col, "code")):
        if c is None or c not in gold.columns:
            raise DataError(f"{source.gold_file}: no {what} column {c or '(--gold)'!r}")
    if id_col not in df.columns:
        raise DataError(f"{where}: no id column {id_col!r} to join {source.gold_file} on")
    gold = gold.assign(__id__=gold[id_col].map(_text))
    dup = gold["__id__"][gold["__id__"].duplicated()]
    if len(dup):
        raise DataError(f"{source.gold_file}: id {dup.iloc[0]!r} appears more than once")
    ids = df[id_col].map(_text)
    missing = int((~gold["__id__"].isin(set(ids))).sum())
    if missing:
        warnings.append(
            f"{missing} of {len(gold)} ids in {source.gold_file} are not in {where}: "
            "is the sample from another table?"
        )
    codes = dict(zip(gold["__id__"], gold[code_col].map(_text), strict=True))
    out = df.assign(__gold__=ids.map(codes).fillna(""), **{DRAWN: ids.isin(set(codes))})
    for c in (col.SAMPLE_PROB, col.SAMPLE_STRATUM):
        if c in gold.columns and c not in df.columns:
            out[c] = ids.map(dict(zip(gold["__id__"], gold[c], strict=True)))
    return out


#: the column join_gold adds: the rows of the gold file, every one of them drawn
DRAWN = "__drawn__"


def drawn_rows(df: pd.DataFrame, where: str) -> npt.NDArray[np.bool_] | None:
    """Which rows were drawn for human coding: the gold file's rows, or the `sampled` mark;
    None where the table does not say."""
    if DRAWN in df.columns:
        return df[DRAWN].to_numpy(dtype=bool)
    if col.SAMPLED not in df.columns:
        return None
    marks = df[col.SAMPLED].map(lambda x: _text(x).lower())
    bad = ~marks.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{where}: row {i + 1}: {col.SAMPLED} {marks.iloc[i]!r} is not true/false")
    return marks.isin(["true", "1", "1.0"]).to_numpy()


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return str(x).strip()


def prepare(
    df: pd.DataFrame,
    var: Variable,
    gold_col: str,
    where: str,
    warnings: list[str],
    missing: Missing = "adjust",
) -> Prepared:
    """Arrays from a frame holding the model's columns and a column of human codes."""
    f, ok = predictions(df, var, where)
    n_failed = int((~ok).sum())
    if n_failed:
        warnings.append(f"left out {n_failed} rows the model failed to code")
    drawn = drawn_rows(df, where)
    df = df.loc[ok].reset_index(drop=True)
    f = f[ok]
    y, r = human_codes(df[gold_col], var, where, gold_col)
    if int(r.sum()) < MIN_CODED:
        raise DataError(
            f"{where}: {int(r.sum())} rows have a human code in {gold_col!r}; an interval "
            f"needs at least {MIN_CODED}"
        )
    design = inclusion(df, r, None if drawn is None else drawn[ok], warnings, where, missing)
    pi, equal = design.pi, design.equal
    for j, lab in enumerate(var.labels):
        k = int(y[r, j].sum())
        if k < MIN_PER_CATEGORY:
            warnings.append(
                f"only {k} human codes are {lab!r} (fewer than {MIN_PER_CATEGORY}): "
                "its intervals rest on few cases"
            )
    return Prepared(var, df, f, y, r, pi, equal, warnings, n_failed, design)


def predictions(
    df: pd.DataFrame, var: Variable, where: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The model's probability for each category (its label as 0/1 where the table has no
    probabilities), and which rows were coded at all."""
    v = var.name
    cols = [col.prob_column(v, lab) for lab in var.labels]
    if all(c in df.columns for c in cols):
        f = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = np.argwhere((f < -1e-9) | (f > 1 + 1e-9))
        if bad.size:
            i, j = (int(x) for x in bad[0])
            raise DataError(
                f"{where}: row {i + 1}: {cols[j]} {f[i, j]:g} is not a probability (0 to 1)"
            )
        ok = ~np.isnan(f).any(axis=1)
        return np.clip(np.nan_to_num(f), 0.0, 1.0), ok
    lab_col = col.label_column(v)
    if lab_col not in df.columns:
        raise DataError(f"{where}: not a coded table for {v!r}: no column {cols[0]!r} or {v!r}")
    labels = [_text(x) for x in df[lab_col]]
    f = np.zeros((len(df), len(var.labels)))
    for i, lab in enumerate(labels):
        for j in _categories(lab, var):
            f[i, j] = 1.0
    ok = np.array([bool(x) for x in labels])
    return f, ok


def _categories(code: str, var: Variable) -> list[int]:
    """The category positions a code names (several for a multi-label code); [] if none."""
    parts = [p for p in code.split(";") if p.strip()] if var.multi else [code]
    out = []
    for p in parts:
        cat = var.find(p) or next(
            (c for c in var.categories if col.slug(c.label) == col.slug(p)), None
        )
        if cat is not None:
            out.append(var.labels.index(cat.label))
    return out


def human_codes(
    codes: pd.Series, var: Variable, where: str, name: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The human code's indicator per category, and which rows have one; a code naming no
    category is an error naming the row."""
    y = np.zeros((len(codes), len(var.labels)))
    r = np.zeros(len(codes), dtype=bool)
    for i, raw in enumerate(codes):
        code = _text(raw)
        if not code:
            continue
        cats = _categories(code, var)
        if not cats:
            raise DataError(
                f"{where}: row {i + 1}: human code {code!r} in {name!r} is not a category "
                f"of {var.name!r} ({', '.join(var.labels)})"
            )
        y[i, cats] = 1.0
        r[i] = True
    return y, r
