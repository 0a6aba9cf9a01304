"""How much codes move between prompt variants: agreement with the codebook as written,
flips, category shares, Krippendorff's alpha across all variants, macro-F1 against gold.

Every figure comes from scikit-learn or `krippendorff`, computed on the variant columns the
check writes (one label per text and variant; empty where the request failed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..codebook import Variable
from ..scoring import INVALID
from .variants import BASE

#: how many of the texts that flip most are listed
MOST_FLIPPING = 10


def column(variable: str, variant: str) -> str:
    """The output column holding `variable`'s labels under `variant`."""
    return f"{variable}.{variant}"


def _codes(labels: pd.Series, variable: Variable) -> np.ndarray:
    """Category indices (codebook order), `invalid` (and any other answer) as k, failed as nan."""
    index = {lab: i for i, lab in enumerate(variable.labels)}
    k = len(variable.labels)
    return np.array(
        [np.nan if _failed(v) else float(index.get(str(v), k)) for v in labels], dtype=float
    )


def _failed(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value == ""


def _kappa(a: np.ndarray, b: np.ndarray, k: int) -> float | None:
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return None
    with warnings.catch_warnings():  # one code only: undefined, reported as None
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(a, b, labels=list(range(k + 1))))
    return None if np.isnan(value) else value


def shares(codes: np.ndarray, variable: Variable) -> dict[str, float]:
    """Each category's share of the coded texts (and `invalid`'s), failed rows left out."""
    ok = codes[~np.isnan(codes)].astype(int)
    counts = np.bincount(ok, minlength=len(variable.labels) + 1)
    total = max(1, int(counts.sum()))
    return {lab: counts[i] / total for i, lab in enumerate([*variable.labels, INVALID])}


def krippendorff_alpha(
    table: pd.DataFrame, variable: Variable, names: Sequence[str]
) -> float | None:
    """Alpha across the variants (each a coder; nominal or ordinal as the variable's scale):
    `invalid` is one more value when nominal, a missing value when ordinal."""
    import krippendorff

    k = len(variable.labels)
    data = np.vstack([_codes(table[column(variable.name, n)], variable) for n in names])
    domain = list(range(k if variable.scale == "ordinal" else k + 1))
    if variable.scale == "ordinal":
        data[data == k] = np.nan
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # every variant gave one and the same code: alpha is undefined
    return float(
        krippendorff.alpha(
            reliability_data=data, value_domain=domain, level_of_measurement=variable.scale
        )
    )


def macro_f1(codes: np.ndarray, gold: np.ndarray, k: int) -> float | None:
    """Macro-F1 over the categories, on texts with a gold code and an answer."""
    from sklearn.metrics import f1_score

    keep = ~np.isnan(codes) & ~np.isnan(gold)
    if not keep.any():
        return None
    return float(
        f1_score(gold[keep], codes[keep], labels=list(range(k)), average="macro", zero_division=0)
    )


def variant_figures(
    table: pd.DataFrame, variable: Variable, name: str, gold: np.ndarray | None
) -> dict[str, Any]:
    """One variant against the codebook as written: agreement, kappa, flips, shares."""
    k = len(variable.labels)
    base = _codes(table[column(variable.name, BASE)], variable)
    mine = _codes(table[column(variable.name, name)], variable)
    both = ~np.isnan(base) & ~np.isnan(mine)
    same = base[both] == mine[both]
    base_shares, my_shares = shares(base, variable), shares(mine, variable)
    out: dict[str, Any] = {
        "variant": name,
        "n_compared": int(both.sum()),
        "agreement": float(same.mean()) if both.any() else None,
        "cohen_kappa": _kappa(base[both], mine[both], k),
        "flip_share": float(1 - same.mean()) if both.any() else None,
        "failed": int(np.isnan(mine).sum()),
        "shares": my_shares,
        "shifts": {c: my_shares[c] - base_shares[c] for c in my_shares},
    }
    if gold is not None:
        out["macro_f1"] = macro_f1(mine, gold, k)
    return out


def most_flipping(
    table: pd.DataFrame, variable: Variable, names: Sequence[str], n: int = MOST_FLIPPING
) -> list[dict[str, Any]]:
    """The texts whose label differs from the base label under the most variants."""
    base = table[column(variable.name, BASE)]
    others = [column(variable.name, v) for v in names if v != BASE]
    flips = sum(
        ((table[c] != base) & ~table[c].map(_failed) & ~base.map(_failed)).astype(int)
        for c in others
    )
    if not isinstance(flips, pd.Series):
        return []
    order = flips.sort_values(ascending=False, kind="stable")
    out = []
    for idx in order.index[:n]:
        if int(flips[idx]) == 0:
            break
        row = table.loc[idx]
        out.append(
            {
                "id": str(row["id"]),
                "text": str(row["text"]),
                "flips": int(flips[idx]),
                "codes": {v: _label(row[column(variable.name, v)]) for v in names},
            }
        )
    return out


def _label(value: Any) -> str | None:
    return None if _failed(value) else str(value)


def measure(
    table: pd.DataFrame,
    variable: Variable,
    names: Sequence[str],
    about: Mapping[str, tuple[str, str]],
    gold: str | None = None,
) -> dict[str, Any]:
    """Every figure of the check for one variable, from the table of variant columns."""
    k = len(variable.labels)
    gold_codes = None
    if gold is not None:
        gold_codes = _codes(table[gold].map(lambda g: None if _failed(g) else g), variable)
        gold_codes[gold_codes == k] = np.nan  # a gold code naming no category is left out
    rows = []
    for name in names:
        fig = variant_figures(table, variable, name, gold_codes)
        kind, text = about[name]
        rows.append({"kind": kind, "about": text, **fig})
    return {
        "variable": variable.name,
        "scale": variable.scale,
        "categories": variable.labels,
        "n_texts": len(table),
        "variants": rows,
        "krippendorff_alpha": krippendorff_alpha(table, variable, names),
        "most_flipping": most_flipping(table, variable, names),
    }
