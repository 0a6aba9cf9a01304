"""`textcoder serve` enforces the JSON-Schema keywords ordinary pydantic models emit (numeric
bounds, `pattern` with `\\d`, `\\w`, `\\s` and classes), and names the keyword and its path in
the 400 where it cannot: driven through the unchanged `openai` client."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openai import BadRequestError, OpenAI
from pydantic import BaseModel, Field

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
