"""`response_format` to a llama.cpp grammar, failing closed, and the grammar as a token mask.

llama.cpp's JSON-schema converter silently ignores keywords it does not know (numeric bounds,
`not`, `uniqueItems`, ...), which would return JSON that does not validate; so the schema is
checked first and any keyword outside what the grammar enforces is refused by name and path.
Enforced here on top of the converter: numeric bounds and `pattern` (`schema_rules`), and an
array of enum values with `uniqueItems` (the values in the enum's order, each at most once,
between minItems and maxItems of them).
"""

from __future__ import annotations

import ctypes
import json
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._exceptions import RequestError
from .schema_rules import BOUNDS, Unenforceable, numeric_rule, rewrite_pattern

if TYPE_CHECKING:
    from .engine import LocalEngine

#: keywords the grammar enforces, or that do not constrain (annotations)
ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "uniqueItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "$defs", "definitions", "pattern", "minLength", "maxLength", "format",
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "strict", "deprecated", "readOnly", "writeOnly", *BOUNDS,
}  # fmt: skip
#: `format` values the converter turns into a grammar
FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
#: a character of a JSON string: unescaped but for quotes, backslashes and control characters
JSON_CHAR = r'[^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCHEMA_PARAM = "response_format.json_schema.schema"


class InvalidRequest(RequestError):
    """A request field the engine cannot honour: which field (`param`) and why (`code`)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message, status=400)
        self.param = param
        self.code = code


def _unsupported(message: str) -> InvalidRequest:
    return InvalidRequest(message, SCHEMA_PARAM, "unsupported_schema")


def response_format_grammar(fmt: object) -> tuple[str | None, dict[str, Any] | None]:
    """(GBNF or None, the JSON schema the answer must follow or None) for a `response_format`."""
    if fmt is None:
        return None, None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None, None
    if kind == "json_object":
        return schema_grammar({"type": "object"}), None
    if not isinstance(fmt, dict) or kind != "json_schema":
        raise InvalidRequest(
            f"response_format.type must be 'text', 'json_object' or 'json_schema', got {kind!r}",
            "response_format.type",
        )
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest(
            "response_format.json_schema is required for type 'json_schema'",
            "response_format.json_schema",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidRequest(
            "response_format.json_schema.name must be 1 to 64 of a-z, A-Z, 0-9, _ and -",
            "response_format.json_schema.name",
        )
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object",
                             SCHEMA_PARAM)  # fmt: skip
    check_schema(schema)
    return schema_grammar(schema), schema


def check_schema(schema: dict[str, Any]) -> None:
    """Raise InvalidRequest for an invalid schema, or one with a keyword we cannot enforce."""
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"invalid JSON Schema: {exc.message}", SCHEMA_PARAM) from None
    _walk(schema, "#", schema)


def _walk(node: Any, path: str, root: dict[str, Any]) -> None:
    if isinstance(node, list):
        for i, item in enumerate(node):
            _walk(item, f"{path}/{i}", root)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        _check_keyword(node, key, value, path, root)
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                _walk(sub, f"{path}/{key}/{name}", root)
        elif key in ("items", "additionalProperties", "prefixItems", "anyOf", "oneOf"):
            _walk(value, f"{path}/{key}", root)


def _check_keyword(node: dict[str, Any], key: str, value: Any, path: str, root: Any) -> None:
    if key not in ENFORCED or key == "allOf":
        raise _unsupported(
            f"JSON Schema keyword {key!r} at {path} cannot be enforced by this server"
        )
    if key == "format" and value not in FORMATS:
        raise _unsupported(
            f"JSON Schema format {value!r} at {path} cannot be enforced by this server"
        )
    if key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
        raise _unsupported(f"only local $ref (#/...) are supported, got {value!r} at {path}")
    try:
        if key in BOUNDS:
            numeric_rule(node)
        elif key == "pattern" and isinstance(value, str):
            rewrite_pattern(value)
    except Unenforceable as exc:
        raise _unsupported(
            f"JSON Schema keyword {exc.keyword!r} at {path} cannot be enforced by this "
            f"server: {exc.detail}"
        ) from None
    if key == "uniqueItems" and value is True and _enum_items(node, root) is None:
        raise _unsupported(
            f"JSON Schema keyword 'uniqueItems' at {path} can be enforced only on an array "
            "of enum values"
        )


def _enum_items(
    node: dict[str, Any], root: Any, refs: dict[str, Any] | None = None
) -> list[Any] | None:
    """The enum values of an array's items (following local $refs), else None."""
    items = node.get("items")
    for _ in range(32):  # a chain of $refs, not a cycle
        if not isinstance(items, dict):
            return None
        ref = items.get("$ref")
        if ref is None:
            break
        items = refs.get(ref) if refs is not None else _local_ref(root, ref)
    if not isinstance(items, dict) or "prefixItems" in node:
        return None
    if "enum" in items:
        return list(items["enum"])
    if "const" in items:
        return [items["const"]]
    return None


def _local_ref(root: Any, ref: str) -> Any:
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = (
            node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        )
    return node


def schema_grammar(
    schema: dict[str, Any], name: str = "", rules: dict[str, str] | None = None
) -> str:
    """GBNF for a JSON schema that `check_schema` accepted: its rule is `root`, or `name`
    when given, with `rules` (name -> body, among them `root`) added around it."""
    from llama_cpp import llama_grammar

    reserved: Any = llama_grammar.RESERVED_NAMES
    base: Any = llama_grammar.SchemaConverter

    class Converter(base):  # type: ignore[misc]
        """llama-cpp-python's converter, plus numeric bounds, patterns, unique enum arrays
        as ordered subsets, and no raw control characters in strings (invalid JSON)."""

        def _add_primitive(self, name: str, rule: Any) -> Any:
            if name == "char":
                rule = llama_grammar.BuiltinRule(JSON_CHAR, [])
            return super()._add_primitive(name, rule)

        def visit(self, node: Any, name: str) -> Any:
            rule_name = name + "-" if name in reserved else name or "root"
            if isinstance(node, dict) and (bounded := numeric_rule(node)) is not None:
                return self._add_rule(rule_name, f"{bounded} space")
            if (
                isinstance(node, dict)
                and node.get("type", "string") == "string"
                and (isinstance(node.get("pattern"), str))
            ):
                return self._visit_pattern(rewrite_pattern(node["pattern"]), rule_name)
            values = _enum_items(node, None, self._refs) if isinstance(node, dict) else None
            if values is None or node.get("uniqueItems") is not True:
                return super().visit(node, name)
            texts = dict.fromkeys(json.dumps(v) for v in values)
            literals = [self._format_literal(t) for t in texts]
            body = ordered_subsets(
                self, rule_name, literals, node.get("minItems", 0), node.get("maxItems")
            )
            return self._add_rule(rule_name, f'"[" space {body} "]" space')

    try:
        converter: Any = Converter(
            prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
        converter.visit(resolved, name)
        for rule, body in (rules or {}).items():
            converter._add_rule(rule, body)
        return str(converter.format_grammar())
    except Unenforceable as exc:
        raise _unsupported(f"JSON Schema keyword {exc.keyword!r}: {exc.detail}") from None
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise _unsupported(f"cannot make a grammar of this JSON Schema: {exc}") from None


def ordered_subsets(conv: Any, name: str, literals: list[str], lo: int, hi: int | None) -> str:
    """Rules for lo..hi of `literals` in their order, each at most once, comma-separated;
    returns the rule to start with. Rule (i, c): c items placed, the next from index i on."""
    n = len(literals)
    hi = n if hi is None else min(hi, n)
    if lo > hi:
        raise _unsupported(f"minItems {lo} is more than the {hi} distinct values allowed")

    def viable(i: int, c: int) -> bool:  # some way on from here ends within lo..hi items
        return c >= lo or n - i >= lo - c

    keys: dict[tuple[int, int], str] = {}
    # without an effective maxItems, counts past max(lo, 1) behave alike: one state for them
    top = hi if hi < n else max(lo, 1)

    def rule(i: int, c: int) -> str:
        return keys[(i, min(c, top))]

    for c in range(top, -1, -1):
        for i in range(n, -1, -1):
            if not viable(i, c):
                continue
            alts = ['""'] if c >= lo else []
            if c < hi or (hi == n and c == top and c > 0):
                sep = '"," space ' if c else ""
                alts += [
                    f"{sep}{literals[j]} {rule(j + 1, c + 1)}"
                    for j in range(i, n)
                    if viable(j + 1, c + 1)
                ]
            keys[(i, c)] = conv._add_rule(f"{name}-u{i}-{c}", " | ".join(alts))
    return rule(0, 0)


class Grammar:
    """A llama.cpp grammar sampler used only as a mask: which tokens may come next."""

    def __init__(self, engine: LocalEngine, gbnf: str) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._ptr = llama_cpp.llama_sampler_init_grammar(
            engine.llm._model.vocab, gbnf.encode("utf-8"), b"root"
        )
        if not self._ptr:
            raise _unsupported("llama.cpp cannot enforce this response_format")
        n = engine.n_vocab
        self._ids = np.arange(n, dtype=np.intc)
        self._data = np.recarray(
            (n,),
            dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True),
        )
        self._arr = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n,
            selected=-1,
            sorted=False,
        )

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token the grammar forbids here set to -inf."""
        n = len(self._ids)
        self._data.id[:] = self._ids
        self._data.logit[:] = 0.0
        self._data.p[:] = 0.0
        self._arr.size = n
        self._arr.selected = -1
        self._arr.sorted = False
        self._llama_cpp.llama_sampler_apply(self._ptr, ctypes.byref(self._arr))
        size = int(self._arr.size)
        banned = np.zeros(n, dtype=bool)
        ids = np.asarray(self._data["id"][:size])
        banned[ids[~np.isfinite(np.asarray(self._data["logit"][:size]))]] = True
        if size < n:  # tokens dropped from the array are forbidden too
            kept = np.zeros(n, dtype=bool)
            kept[ids] = True
            banned |= ~kept
        out = logits.copy()
        out[banned] = -np.inf
        return out

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            self._llama_cpp.llama_sampler_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        self.close()


def check_grammar(engine: LocalEngine, gbnf: str) -> None:
    """Raise InvalidRequest if llama.cpp cannot parse `gbnf` (before a request starts)."""
    Grammar(engine, gbnf).close()
