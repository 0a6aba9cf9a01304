"""`textcoder serve` under the client libraries people point at OpenAI-compatible servers,
used as their documentation shows: LangChain's `with_structured_output(method=
"function_calling")` and instructor's default mode (tools). Each is skipped where the
package is not installed. The tiny model's answer is not judged, only that it parses."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

TEXT = "Code the sentiment of this review: 'The staff were lovely and the room was clean.'"


class Coding(BaseModel):
    """The sentiment of a text and how sure the coder is."""

    label: Literal["positive", "neutral", "negative"]
    confidence: float = Field(ge=0, le=1)


def test_langchain_structured_output_by_function_calling(serve_url: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        base_url=serve_url, api_key="none", model="smollm2", temperature=0, max_tokens=80,
        max_retries=0,
    )  # fmt: skip
    coder = llm.with_structured_output(Coding, method="function_calling", include_raw=True)
    out = coder.invoke(TEXT)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Coding)
    (call,) = out["raw"].tool_calls
    assert call["name"] == "Coding" and call["id"].startswith("call_")


def test_instructor_default_mode(serve_url: str) -> None:
    instructor = pytest.importorskip("instructor")
    from openai import OpenAI

    client = instructor.from_openai(OpenAI(base_url=serve_url, api_key="none", max_retries=0))
    assert client.mode == instructor.Mode.TOOLS  # the default this test is about
    coding, raw = client.chat.completions.create_with_completion(
        model="smollm2", response_model=Coding, max_retries=0, temperature=0, max_tokens=80,
        messages=[{"role": "user", "content": TEXT}],
    )  # fmt: skip
    assert isinstance(coding, Coding)
    assert raw.choices[0].finish_reason == "tool_calls"


def test_langchain_legacy_completion_stream(serve_url: str) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.OpenAI(base_url=serve_url, api_key="none", model="smollm2",
                                  temperature=0, max_tokens=8, max_retries=0)  # fmt: skip
    pieces = list(llm.stream("The capital of France is"))
    assert len(pieces) > 1 and "".join(pieces) == llm.invoke("The capital of France is")
