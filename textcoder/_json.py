"""JSON on the hot path: orjson, several times faster than the standard library on the bodies
and answers of a run (bench/runner_overhead.py), with the standard library's leniency kept."""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # a YAML codebook's `{1234: -100}` keys, as json writes them


def to_json(value: Any) -> bytes:
    """`value` as UTF-8 JSON; what JSON cannot hold is written as its `str`. What orjson
    refuses (a lone surrogate from a JSONL file, an integer past 64 bits) is written as
    Python's json writes it."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str).encode("utf-8")


def from_json(raw: bytes | str) -> Any:
    """Parse JSON; what orjson refuses but Python's json reads (`NaN`, `Infinity`) is read as
    json reads it (an integer past 64 bits becomes a float). Raises ValueError on what is not
    JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
