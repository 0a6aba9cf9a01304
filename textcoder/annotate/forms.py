"""The coder page's POST body, checked against the codebook: every code must be a category of
its variable, or the request is refused (400) and nothing of it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from ..codebook import Codebook
from .sample import Sample

ACTIONS = ("next", "skip", "back", "save")
MAX_NOTE = 10_000
MAX_FIELDS = 1000
FLAGS = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False, "": False}
FIELD = "v:"  # a variable's field is `v:NAME`


class FormError(ValueError):
    """A POST that does not fit the codebook; its message is the 400's body."""


@dataclass(frozen=True)
class Posted:
    action: str
    item: str
    codes: dict[str, str]  # variable -> canonical code (multi: `;`-joined, codebook order)
    note: str | None
    unsure: bool | None


def parse_body(body: bytes) -> dict[str, list[str]]:
    """An `application/x-www-form-urlencoded` body (what the page's forms and fetches send)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError:  # more fields than MAX_FIELDS
        raise FormError(f"a form holds at most {MAX_FIELDS} fields") from None


def posted(book: Codebook, form: dict[str, list[str]]) -> Posted:
    """The POST as codes the store can take; `FormError` for anything the codebook refuses."""
    action = _one(form, "action", "save")
    if action not in ACTIONS:
        raise FormError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    item = _one(form, "item", None)
    if item is None:
        raise FormError("the form names no text (field `item`)")
    known = {v.name for v in book.variables}
    for key in form:
        if key.startswith(FIELD) and key[len(FIELD) :] not in known:
            raise FormError(f"{key[len(FIELD) :]!r} is not a variable of the codebook")
    codes: dict[str, str] = {}
    for var in book.variables:
        values = [v for v in form.get(FIELD + var.name, []) if v.strip()]
        chosen = []
        for value in values:
            cat = var.find(value)
            if cat is None:
                raise FormError(
                    f"{value!r} is not a category of {var.name!r} ({', '.join(var.labels)})"
                )
            chosen.append(cat.label)
        if var.multi:
            if FIELD + var.name in form or action == "next":
                codes[var.name] = ";".join(lab for lab in var.labels if lab in chosen)
        elif len(set(chosen)) > 1:
            raise FormError(f"{var.name!r} takes one category, not {len(set(chosen))}")
        elif chosen:
            codes[var.name] = chosen[0]
    note = _one(form, "note", None)
    if note is not None and len(note) > MAX_NOTE:
        raise FormError(f"a note holds at most {MAX_NOTE} characters")
    return Posted(action, item, codes, note, _unsure(form))


def _unsure(form: dict[str, list[str]]) -> bool | None:
    """The `unsure` mark: None when the form carries neither it nor the note (an unchecked
    box is not sent, so a form with the note and no mark clears it)."""
    if "note" not in form and "unsure" not in form:
        return None
    value = (_one(form, "unsure", "") or "").strip().lower()
    if value not in FLAGS:
        raise FormError(f"unsure must be 1 or 0, not {value!r}")
    return FLAGS[value]


def _one(form: dict[str, list[str]], key: str, default: str | None) -> str | None:
    values = form.get(key)
    if not values:
        return default
    if len(values) > 1:
        raise FormError(f"field {key!r} given {len(values)} times")
    return values[0]


def resolution(book: Codebook, sample: Sample, form: dict[str, list[str]]) -> tuple[str, str, str]:
    """The admin's code for a tied text: (text id, variable, category label, or '' to take
    a resolution back); `FormError` for a text, variable or category the project lacks."""
    item = _one(form, "item", "") or ""
    if item not in sample.rows:
        raise FormError(f"no text {item!r} in the sample")
    name = _one(form, "variable", "") or ""
    var = next((v for v in book.variables if v.name == name and not v.multi), None)
    if var is None:
        raise FormError(f"{name!r} is not a variable taking one category")
    code = (_one(form, "code", "") or "").strip()
    if not code:
        return item, name, ""
    cat = var.find(code)
    if cat is None:
        raise FormError(f"{code!r} is not a category of {name!r} ({', '.join(var.labels)})")
    return item, name, cat.label
