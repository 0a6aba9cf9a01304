"""`response_format` to a llama.cpp grammar, failing closed: a schema we cannot enforce is a 400.

llama.cpp's JSON-schema converter silently ignores keywords it does not know (numeric
bounds, `not`, `if`, ...), which would return JSON that does not validate; so the schema is
checked first, and any keyword outside what the converter enforces is refused by name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import APIError, bad_request

#: keywords the converter enforces, or that do not constrain (annotations)
ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "pattern", "minLength", "maxLength", "format",
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "strict", "deprecated", "readOnly", "writeOnly",
}  # fmt: skip
#: `format` values the converter turns into a grammar
FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def response_format_grammar(fmt: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """(GBNF or None, the JSON schema to validate the answer against or None)."""
    if fmt is None:
        return None, None
    kind = fmt.get("type")
    if kind == "text":
        return None, None
    if kind == "json_object":
        return _gbnf({"type": "object"}), None
    if kind != "json_schema":
        raise bad_request(
            f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            "response_format.type",
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise bad_request(
            "response_format.json_schema is required for type 'json_schema'",
            "response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise bad_request(
            "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise bad_request(
            "response_format.json_schema.schema must be a JSON Schema object",
            "response_format.json_schema.schema",
        )
    _check_schema(schema)
    return _gbnf(schema), schema


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    param = "response_format.json_schema.schema"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise bad_request(f"invalid JSON Schema: {exc.message}", param) from None
    _walk(schema, "#", param)


def _walk(node: Any, path: str, param: str) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{path}/{i}", param)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key not in ENFORCED:
            raise bad_request(
                f"JSON Schema keyword {key!r} at {path} cannot be enforced by this server",
                param,
                code="unsupported_schema",
            )
        if key == "format" and value not in FORMATS:
            raise bad_request(
                f"JSON Schema format {value!r} at {path} cannot be enforced by this server",
                param,
                code="unsupported_schema",
            )
        if key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise bad_request(
                f"only local $ref (#/...) are supported, got {value!r} at {path}",
                param,
                code="unsupported_schema",
            )
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                _walk(sub, f"{path}/{key}/{name}", param)
        elif key in ("items", "additionalProperties", "prefixItems", "anyOf", "oneOf", "allOf"):
            _walk(value, f"{path}/{key}", param)
    if "allOf" in node:
        raise bad_request(
            f"JSON Schema keyword 'allOf' at {path} cannot be enforced by this server",
            param,
            code="unsupported_schema",
        )


def _gbnf(schema: dict[str, Any]) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise APIError(
            400,
            f"cannot make a grammar of this JSON Schema: {exc}",
            param="response_format.json_schema.schema",
            code="unsupported_schema",
        ) from None
