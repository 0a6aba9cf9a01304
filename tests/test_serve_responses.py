"""OpenAI's Responses API on `textcoder serve` (`POST /v1/responses`) through the unchanged
`openai` client: input as a string or message items, instructions, max_output_tokens,
temperature, text.format json_schema, top_logprobs, function tools, and the typed event
stream. It answers as Chat Completions does: the same request gives the same text."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from openai import BadRequestError, OpenAI
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseOutputMessage
from pydantic import BaseModel, Field

INSTRUCTIONS = "You code the sentiment of customer reviews."
REVIEW = "Review: 'The staff were lovely and the room was clean.'"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"],
        "additionalProperties": False,
    },
    "strict": True,
}  # fmt: skip


class Coding(BaseModel):
    label: Literal["positive", "neutral", "negative"]
    confidence: float = Field(ge=0, le=1)


@pytest.fixture(scope="module")
def client(serve_url: str) -> OpenAI:
    return OpenAI(base_url=serve_url, api_key="none", max_retries=0)


def test_text_answer_matches_chat_completions(client: OpenAI) -> None:
    done = client.responses.create(model="smollm2", instructions=INSTRUCTIONS, input=REVIEW,
                                   max_output_tokens=12, temperature=0, top_logprobs=3)  # fmt: skip
    Response.model_validate(done.model_dump())
    chat = client.chat.completions.create(
        model="smollm2", max_tokens=12, temperature=0,
        messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": REVIEW}],
    )  # fmt: skip
    assert done.output_text == chat.choices[0].message.content
    assert done.id.startswith("resp_") and done.instructions == INSTRUCTIONS
    usage = done.usage
    assert usage is not None and usage.input_tokens == chat.usage.prompt_tokens  # type: ignore[union-attr]
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    if chat.choices[0].finish_reason == "length":
        assert done.status == "incomplete" and usage.output_tokens == 12
        assert done.incomplete_details is not None
        assert done.incomplete_details.reason == "max_output_tokens"
    else:
        assert done.status == "completed"
    (message,) = done.output
    assert isinstance(message, ResponseOutputMessage) and message.status == "completed"
    part = message.content[0]
    assert part.type == "output_text" and part.logprobs
    assert "".join(lp.token for lp in part.logprobs) == part.text
    assert all(len(lp.top_logprobs) == 3 and lp.logprob <= 0 for lp in part.logprobs)


def test_message_items_and_json_schema_format(client: OpenAI) -> None:
    items: Any = [
        {"role": "developer", "content": INSTRUCTIONS},
        {"role": "user", "content": [{"type": "input_text", "text": REVIEW}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "positive"}]},
        {"role": "user", "content": "Now as JSON, please."},
    ]  # fmt: skip
    parsed = client.responses.parse(model="smollm2", input=items, text_format=Coding,
                                    max_output_tokens=60, temperature=0)  # fmt: skip
    assert parsed.status == "completed"
    assert isinstance(parsed.output_parsed, Coding)


def test_stream_events_build_the_same_response(client: OpenAI) -> None:
    body: Any = dict(model="smollm2", instructions=INSTRUCTIONS, input=REVIEW,
                     max_output_tokens=40, temperature=0)  # fmt: skip
    whole = client.responses.create(**body)
    events = list(client.responses.create(**body, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]  # fmt: skip
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done",
                            "response.output_item.done"]  # fmt: skip
    assert kinds[-1] == f"response.{whole.status}"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == whole.output_text
    if whole.status == "completed":  # the helper needs response.completed
        with client.responses.stream(**body) as stream:
            final = stream.get_final_response()
        assert final.output_text == whole.output_text and final.status == "completed"


def test_function_tools_whole_streamed_and_in_the_history(client: OpenAI) -> None:
    body: Any = dict(model="smollm2", input="What is the weather in Paris?", tools=[WEATHER],
                     tool_choice="required", parallel_tool_calls=False, temperature=0,
                     max_output_tokens=60)  # fmt: skip
    done = client.responses.create(**body)
    (call,) = done.output
    assert isinstance(call, ResponseFunctionToolCall) and call.name == "get_weather"
    assert call.call_id.startswith("call_") and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    events = list(client.responses.create(**body, stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done_args,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert args == done_args.arguments == call.arguments
    follow = client.responses.create(
        model="smollm2", tools=[WEATHER], max_output_tokens=20, temperature=0,
        input=[{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "21 C"}],
    )  # fmt: skip
    assert follow.status in ("completed", "incomplete")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
         "input[0].content[0].type"),
        ({"input": [{"type": "web_search_call", "id": "w"}]}, "input[0].type"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {
            "type": "object", "properties": {"n": {"type": "number", "multipleOf": 2}}}}}},
         "text.format.schema"),
    ],
)  # fmt: skip
def test_refused_requests_name_the_field(client: OpenAI, extra: dict[str, Any], param: str
                                         ) -> None:  # fmt: skip
    body: Any = {"model": "smollm2", "input": "hi", **extra}
    with pytest.raises(BadRequestError) as err:
        client.responses.create(**body)
    assert err.value.param == param, err.value.message
    if param == "previous_response_id":
        assert "store" in err.value.message
