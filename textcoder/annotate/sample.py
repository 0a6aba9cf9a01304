"""The sample to code: its texts by id, and which texts each coder sees in which order.

Assignment and order are computed from the ids, the coders, `overlap` and `seed` alone, so a
restarted server shows every coder the same texts in the same order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import DataError, UsageError

if TYPE_CHECKING:
    import pandas as pd

CODER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class Sample:
    """The texts of a sample table, in table order, with the table itself (for the export and
    for the model's codes, which coders never see)."""

    path: str
    frame: pd.DataFrame
    ids: list[str]
    texts: list[str]
    id_column: str | None
    text_column: str
    rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", {k: i for i, k in enumerate(self.ids)})

    def text(self, item: str) -> str:
        return self.texts[self.rows[item]]

    def fingerprint(self) -> list[list[str]]:
        """[id, hash of its text] in table order: what a store checks the sample against,
        so an edited text is found by its id and a reordered table is still the sample."""
        return [[i, _hash(t)[:16]] for i, t in zip(self.ids, self.texts, strict=True)]

    def digest(self) -> str:
        """A hash of the ids and texts, whatever their order."""
        return _hash("\n".join(sorted(f"{i}\x00{h}" for i, h in self.fingerprint())))

    def ids_digest(self) -> str:
        """A hash of the ids in table order: what stores made by textcoder 0.x kept."""
        return _hash("\n".join(self.ids))


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_sample(
    path: str | Path, text_column: str = "text", id_column: str | None = None
) -> Sample:
    """Read SAMPLE (any table textcoder reads); ids from `id_column`, else the row number."""
    from ..tables import read_table

    df = read_table(path)
    if text_column not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise DataError(f"{path}: no text column {text_column!r} (columns: {cols})")
    if id_column is not None and id_column not in df.columns:
        raise DataError(f"{path}: no id column {id_column!r}")
    if len(df) == 0:
        raise DataError(f"{path}: the sample has no rows")
    texts = [_text(x) for x in df[text_column]]
    if id_column is None:
        ids = [str(i + 1) for i in range(len(df))]
    else:
        ids = [_text(x) for x in df[id_column]]
        seen: dict[str, int] = {}
        for i, key in enumerate(ids):
            if not key:
                raise DataError(f"{path}: row {i + 1}: empty id in column {id_column!r}")
            if key in seen:
                raise DataError(
                    f"{path}: rows {seen[key] + 1} and {i + 1}: id {key!r} appears twice"
                )
            seen[key] = i
    return Sample(str(path), df, ids, texts, id_column, text_column)


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return ""
    return str(x)


def parse_coders(spec: str) -> list[str]:
    """`alice,bob` as a list of names that can go into URLs and column names."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("--coders needs at least one name, e.g. --coders alice,bob")
    for n in names:
        if not CODER_NAME.fullmatch(n):
            raise UsageError(
                f"coder name {n!r}: use letters, digits, '.', '_' or '-' (at most 32 characters)"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"--coders names {', '.join(dupes)} twice")
    return names


def check_assignment(overlap: float, seed: int) -> None:
    """Refuse an `overlap` outside [0, 1] (nan included) or a negative seed."""
    if not 0.0 <= overlap <= 1.0:
        raise UsageError(f"--overlap must be between 0 and 1, not {overlap}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, not {seed}")


def assign(ids: list[str], coders: list[str], overlap: float, seed: int) -> dict[str, list[str]]:
    """Each coder's texts in that coder's own order. A share `overlap` of the texts (drawn at
    random) goes to every coder; the rest is dealt out in turn, one coder each."""
    check_assignment(overlap, seed)
    order = np.random.default_rng(seed).permutation(len(ids))
    shared = len(ids) if overlap >= 1.0 else round(overlap * len(ids))
    out: dict[str, list[str]] = {}
    for j, coder in enumerate(coders):
        mine = np.sort(np.concatenate([order[:shared], order[shared:][j :: len(coders)]]))
        rng = np.random.default_rng([seed, _name_seed(coder)])
        out[coder] = [ids[i] for i in rng.permutation(mine)]
    return out


def _name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def check_settings(stored: dict[str, Any] | None, wanted: dict[str, Any], store: str) -> None:
    """A store keeps the settings it was started with; refuse others that would move texts
    between coders (other coders are fine when everyone codes everything)."""
    if stored is None:
        return
    for key in ("overlap", "seed"):
        if stored.get(key) != wanted.get(key):
            raise UsageError(
                f"{store}: made for {key} {stored.get(key)!r}, not {wanted.get(key)!r}; "
                "use the same settings, or a new --store"
            )
    if wanted["overlap"] < 1.0 and stored.get("coders") != wanted.get("coders"):
        raise UsageError(
            f"{store}: made for coders {','.join(stored.get('coders', []))}; with --overlap "
            "below 1 the texts are dealt out among them, so keep the same coders, or use a "
            "new --store"
        )


def check_texts(stored: list[list[str]], sample: Sample, store: str) -> None:
    """Refuse a sample whose texts are not those the store was made for: by the ids whose
    text changed, or the ids gone or new. The order of the rows may change."""
    old = {i: h for i, h in stored}
    new = {i: h for i, h in sample.fingerprint()}
    changed = [i for i in sample.ids if i in old and old[i] != new[i]]
    if changed:
        raise DataError(
            f"{store}: the text of {_some(changed)} in {sample.path} changed since the store "
            "was made (codes given to the old text would stand beside the new one); restore "
            "those texts, or use a new --store"
        )
    gone, added = [i for i in old if i not in new], [i for i in sample.ids if i not in old]
    if gone or added:
        what = "; ".join(
            part
            for part in (
                f"{_some(gone)} not in it" if gone else "",
                f"{_some(added)} new" if added else "",
            )
            if part
        )
        raise DataError(
            f"{store}: made for another sample than {sample.path} ({what}); use the sample it "
            "was made for, or a new --store"
        )


def _some(ids: list[str], shown: int = 5) -> str:
    """`ids '3', '7' (and 12 more)`."""
    head = ", ".join(repr(i) for i in ids[:shown])
    more = f" (and {len(ids) - shown} more)" if len(ids) > shown else ""
    return f"id{'s' if len(ids) > 1 else ''} {head}{more}"
