"""`textcoder serve` enforces the JSON-Schema keywords ordinary pydantic models emit (numeric
bounds, `pattern` with `\\d`, `\\w`, `\\s` and classes), and names the keyword and its path in
the 400 where it cannot: driven through the unchanged `openai` client."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from openai import BadRequestError, OpenAI
from pydantic import BaseModel, Field

from textcoder.backends.llama.schema_rules import int_range, number_range

MESSAGES: Any = [{"role": "user", "content": "Code this text: 'Great service!' as JSON."}]


class Coding(BaseModel):
    confidence: float = Field(ge=0, le=1)
    stars: int = Field(ge=1, le=5)
    offset: int = Field(gt=-20, lt=300)
    margin: float = Field(gt=-3, lt=0)
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    code: str = Field(pattern=r"^[A-Z]\w{2,5}(\s[a-z.]+)?$")


@pytest.fixture(scope="module")
def client(serve_url: str) -> OpenAI:
    return OpenAI(base_url=serve_url, api_key="none", max_retries=0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pydantic_bounds_and_patterns_are_enforced(client: OpenAI, seed: int) -> None:
    done = client.chat.completions.parse(
        model="smollm2", messages=MESSAGES, response_format=Coding, max_tokens=250,
        temperature=1.0, seed=seed,
    )  # fmt: skip
    choice = done.choices[0]
    assert choice.finish_reason == "stop"
    parsed = choice.message.parsed
    assert isinstance(parsed, Coding)  # pydantic checked every bound and pattern
    jsonschema.validate(parsed.model_dump(), Coding.model_json_schema())


def _refused(client: OpenAI, schema: dict[str, Any]) -> str:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    with pytest.raises(BadRequestError) as err:
        client.chat.completions.create(model="smollm2", messages=MESSAGES, response_format=fmt)
    assert err.value.code == "unsupported_schema"
    assert err.value.param == "response_format.json_schema.schema"
    return err.value.message


@pytest.mark.parametrize(
    ("prop", "keyword"),
    [
        ({"type": "number", "minimum": 0.5}, "'minimum'"),
        ({"type": "integer", "multipleOf": 5}, "'multipleOf'"),
        ({"type": "string", "pattern": r"^\bword$"}, "'pattern'"),
        ({"type": "string", "pattern": r"^(?=a)b$"}, "'pattern'"),
        ({"type": "string", "pattern": r'^say "hi"$'}, "'pattern'"),
        ({"type": "string", "maximum": 3}, "'maximum'"),
    ],
)
def test_unenforceable_keywords_are_named_with_their_path(
    client: OpenAI, prop: dict[str, Any], keyword: str
) -> None:
    schema = {"type": "object", "properties": {"x": {"anyOf": [prop, {"type": "null"}]}}}
    message = _refused(client, schema)
    assert keyword in message and "#/properties/x/anyOf/0" in message


def _regex(gbnf: str) -> re.Pattern[str]:
    """The digit grammars `schema_rules` writes (literals, classes, groups, counts) as a regex."""
    return re.compile(re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), gbnf).replace(" ", ""))


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(-12, 345), (0, 1), (5, None), (None, -3), (-1000, -999), (7, 7), (19, 2001), (None, None)],
)
def test_integer_bounds_allow_exactly_the_range(lo: int | None, hi: int | None) -> None:
    rule = _regex(int_range(lo, hi))
    for v in range(-2500, 2500):
        assert bool(rule.fullmatch(str(v))) == ((lo is None or v >= lo) and (hi is None or v <= hi))
    assert not rule.fullmatch("007") and not rule.fullmatch("-0")


@pytest.mark.parametrize(
    ("lo", "hi"),
    [((0, False), (1, False)), ((-3, True), (0, True)), ((0, True), None), (None, (-2, False)),
     ((-1, False), (2, True)), ((1, False), (1, False))],
)  # fmt: skip
def test_number_bounds_allow_only_numbers_in_range(
    lo: tuple[int, bool] | None, hi: tuple[int, bool] | None
) -> None:
    rule = _regex(number_range(lo, hi))

    def inside(x: float) -> bool:
        ok_lo = lo is None or (x > lo[0] if lo[1] else x >= lo[0])
        return ok_lo and (hi is None or (x < hi[0] if hi[1] else x <= hi[0]))

    texts = [f"{v / 8:g}" for v in range(-40, 41)] + ["1.0", "1.000", "0.0", "-0.5", "2.25"]
    for text in texts:
        if rule.fullmatch(text):
            assert inside(float(text)), text  # never a number outside the bounds
        elif "e" not in text:
            assert not inside(float(text)) or text.startswith("-0"), text  # nothing inside lost
