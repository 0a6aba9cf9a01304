"""Tool calls on `textcoder serve` through the unchanged `openai` client: `tool_choice`
required / named / auto / none, parallel calls, streamed deltas in OpenAI's chunk shape,
`tool` messages in the history. The tiny model's choices are not judged, only that every
call is well formed: a known function, arguments that validate against its schema, ids."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from openai import BadRequestError, OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
)

from textcoder.backends.llama.tools import call_text

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 20},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK: Any = {"type": "function", "function": {"name": "get_time"}}  # no arguments
TOOLS = [WEATHER, CLOCK]
SCHEMAS = {"get_weather": WEATHER["function"]["parameters"],
           "get_time": {"type": "object", "additionalProperties": False}}  # fmt: skip
ASK: Any = [{"role": "user", "content": "What is the weather in Paris this week?"}]


@pytest.fixture(scope="module")
def client(serve_url: str) -> OpenAI:
    return OpenAI(base_url=serve_url, api_key="none", max_retries=0)


def check_calls(done: ChatCompletion, names: set[str], most: int | None = None) -> list[Any]:
    """Every choice called: known functions, valid arguments, distinct ids."""
    calls = []
    for choice in done.choices:
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None and choice.message.tool_calls
        assert most is None or len(choice.message.tool_calls) <= most
        for call in choice.message.tool_calls:
            assert isinstance(call, ChatCompletionMessageFunctionToolCall)
            assert call.type == "function" and call.id.startswith("call_")
            assert call.function.name in names
            jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
            calls.append(call)
    assert len({c.id for c in calls}) == len(calls)
    return calls


@pytest.mark.parametrize("seed", [1, 2])
def test_required_calls_one_function_with_valid_arguments(client: OpenAI, seed: int) -> None:
    done = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required",
        parallel_tool_calls=False, temperature=1.0, seed=seed, max_tokens=80, n=2,
    )  # fmt: skip
    ChatCompletion.model_validate(done.model_dump())
    check_calls(done, {"get_weather", "get_time"}, most=1)


def test_named_function_and_parallel_calls(client: OpenAI) -> None:
    named = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, max_tokens=80, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )  # fmt: skip
    (call,) = check_calls(named, {"get_time"})
    assert json.loads(call.function.arguments) == {}
    many = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120,
        temperature=0,
    )  # fmt: skip
    check_calls(many, {"get_weather", "get_time"})


def _token(http: httpx.Client, text: str) -> int:
    r = http.post("/tokenize", json={"prompt": text, "add_special_tokens": False})
    (token,) = r.json()["tokens"]
    return int(token)


def test_auto_answers_text_or_a_valid_call(client: OpenAI, serve_url: str) -> None:
    for seed in (1, 2):
        done = client.chat.completions.create(
            model="smollm2", messages=ASK, tools=TOOLS, temperature=1.0, seed=seed,
            max_tokens=40,
        )  # fmt: skip
        message = done.choices[0].message
        if message.tool_calls:
            check_calls(done, {"get_weather", "get_time"})
        else:
            assert isinstance(message.content, str) and not message.content.startswith("<")
            assert done.choices[0].finish_reason in ("stop", "length")
    # a call once begun is held to the grammar: push the first token to start one
    with httpx.Client(base_url=serve_url.removesuffix("/v1"), timeout=60) as http:
        lt = _token(http, "<")
    called = client.chat.completions.create(
        model="smollm2", messages=ASK, tools=TOOLS, tool_choice="auto", logit_bias={str(lt): 100},
        max_tokens=80, temperature=0, parallel_tool_calls=False,  # the bias would start more
    )  # fmt: skip
    check_calls(called, {"get_weather", "get_time"})


def test_none_ignores_the_tools(client: OpenAI) -> None:
    plain = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=5,
                                           temperature=0)  # fmt: skip
    none = client.chat.completions.create(model="smollm2", messages=ASK, max_tokens=5,
                                          temperature=0, tools=TOOLS, tool_choice="none")  # fmt: skip
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content == plain.choices[0].message.content
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens  # type: ignore[union-attr]


def test_streamed_calls_in_openai_chunk_shape(client: OpenAI, serve_url: str) -> None:
    body: Any = dict(model="smollm2", messages=ASK, tools=TOOLS, tool_choice="required",
                     temperature=0, max_tokens=120)  # fmt: skip
    whole = client.chat.completions.create(**body)
    calls = check_calls(whole, {"get_weather", "get_time"})
    with client.chat.completions.stream(**body) as stream:
        final = stream.get_final_completion()
    got = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in got] == [
        (c.function.name, c.function.arguments) for c in calls
    ]
    with httpx.stream("POST", f"{serve_url}/chat/completions", timeout=120,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:  # fmt: skip
        blocks = r.read().decode().split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(b.removeprefix("data: ")) for b in blocks[:-2]]
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    *deltas, finish, last = chunks
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0
    assert finish["choices"][0]["finish_reason"] == "tool_calls"
    assert deltas[0]["choices"][0]["delta"]["role"] == "assistant"
    assert deltas[0]["choices"][0]["delta"]["content"] is None
    seen: dict[int, int] = {}
    for c in deltas:
        for entry in c["choices"][0]["delta"]["tool_calls"]:
            first = entry["index"] not in seen
            seen[entry["index"]] = seen.get(entry["index"], 0) + 1
            # id, type and name only in a call's first delta: the client concatenates them
            assert ("id" in entry) == first and ("name" in entry["function"]) == first
    assert sorted(seen) == list(range(len(calls)))


def test_tool_results_in_the_history(client: OpenAI, serve_url: str) -> None:
    args = '{"city": "Paris", "unit": "celsius", "days": 2}'
    history: Any = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]  # fmt: skip
    base = serve_url.removesuffix("/v1")
    rendered = httpx.post(f"{base}/tokenize", json={"messages": history}).json()["tokens"]
    expected: Any = [*ASK, {"role": "assistant", "content": call_text("get_weather", args)},
                     history[-1]]  # fmt: skip
    assert rendered == httpx.post(f"{base}/tokenize", json={"messages": expected}).json()["tokens"]
    # the tool message goes through SmolLM2's ChatML template under its own role
    turn = "<|im_start|>tool\n" + '{"temp": 21}' + "<|im_end|>"
    sub = httpx.post(f"{base}/tokenize", json={"prompt": turn, "add_special_tokens": False})
    want = sub.json()["tokens"]
    assert any(rendered[i : i + len(want)] == want for i in range(len(rendered)))
    done = client.chat.completions.create(model="smollm2", messages=history, tools=TOOLS,
                                          max_tokens=20, temperature=0)  # fmt: skip
    assert done.choices[0].finish_reason in ("stop", "length", "tool_calls")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}]},
         "tools[0].function.parameters"),
        ({"tools": [{"type": "custom", "custom": {"name": "g"}}]}, "tools[0].type"),
        ({"tools": [CLOCK, CLOCK]}, "tools"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)  # fmt: skip
def test_bad_tool_requests_name_the_field(client: OpenAI, extra: dict[str, Any], param: str
                                          ) -> None:  # fmt: skip
    body = {"messages": ASK, **extra}
    with pytest.raises(BadRequestError) as err:
        client.chat.completions.create(model="smollm2", **body)
    assert err.value.param == param, err.value.message


def test_streamed_auto_text_answer_is_the_whole_answer(client: OpenAI) -> None:
    body: Any = dict(model="smollm2", messages=ASK, tools=TOOLS, temperature=0, max_tokens=12,
                     logprobs=True)  # fmt: skip
    whole = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True))
    deltas = [c.choices[0].delta for c in chunks]
    assert deltas[0].role == "assistant"
    text = "".join(d.content or "" for d in deltas)
    message = whole.choices[0].message
    if message.tool_calls is None:
        assert text == message.content and not any(d.tool_calls for d in deltas)
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    streamed = [t.token for c in chunks if c.choices[0].logprobs
                for t in c.choices[0].logprobs.content or []]  # fmt: skip
    assert streamed == [t.token for t in whole.choices[0].logprobs.content or []]  # type: ignore[union-attr]
