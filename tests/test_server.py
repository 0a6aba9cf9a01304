"""`textcoder serve` against the official `openai` client and as raw HTTP.

One real server per session (fixture `serve_url`); raw JSON is validated against the
`openai` package's types with `model_validate`, since the client itself fills missing
fields with None. The cases follow ../shared/reference/chat-completions.md section (2).
"""

from __future__ import annotations

import json
import math
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from openai import (
    AuthenticationError,
    BadRequestError,
    LengthFinishReasonError,
    NotFoundError,
    OpenAI,
)
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

from .servers import ServeProcess

SYSTEM = (
    "Act like a sentiment classification system. Classify the tweet's sentiment as "
    'positive, neutral, or negative. Categories: "positive", "neutral", "negative"'
)
CLASSIFY = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Text: '''I loved the new Batman movie!'''"},
]
TRANSLATE = [
    {
        "role": "system",
        "content": "Act as a translation system that translates English texts to French",
    },
    {"role": "user", "content": "Hello, how are you?"},
]


@pytest.fixture(scope="module")
def client(serve_url: str) -> OpenAI:
    return OpenAI(base_url=serve_url, api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def http(serve_url: str) -> httpx.Client:
    with httpx.Client(base_url=serve_url, timeout=120) as c:
        yield c  # type: ignore[misc]


def post(http: httpx.Client, **body: Any) -> dict[str, Any]:
    r = http.post("/chat/completions", json={"model": "smollm2", **body})
    assert r.status_code == 200, r.text
    raw: dict[str, Any] = r.json()
    ChatCompletion.model_validate(raw)
    return raw


def sse(http: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    """The events of a streamed request (every chunk validated); asserts the framing."""
    events: list[dict[str, Any]] = []
    with http.stream(
        "POST", "/chat/completions", json={"model": "smollm2", "stream": True, **body}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    blocks = text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    for block in blocks[:-2]:
        assert block.startswith("data: ")
        chunk = json.loads(block[6:])
        ChatCompletionChunk.model_validate(chunk)
        events.append(chunk)
    return events


# models and envelope ------------------------------------------------------------------------


def test_models_list_and_retrieve(client: OpenAI, http: httpx.Client) -> None:
    assert [m.id for m in client.models.list()] == ["smollm2", "gpt-4o"]
    raw = http.get("/models").json()
    assert raw["object"] == "list"
    for item in raw["data"]:
        Model.model_validate(item)
        assert item["object"] == "model" and isinstance(item["created"], int)
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(NotFoundError):
        client.models.retrieve("no-such-model")


def test_tutorial_translation_runs_unchanged(client: OpenAI, http: httpx.Client) -> None:
    response = client.chat.completions.create(model="gpt-4o", messages=TRANSLATE, max_tokens=24)  # type: ignore[arg-type]
    assert response.model == "gpt-4o"
    assert response.choices[0].message.role == "assistant"
    assert isinstance(response.choices[0].message.content, str)
    raw = http.post(
        "/chat/completions", json={"model": "gpt-4o", "messages": TRANSLATE, "max_tokens": 8}
    ).json()
    ChatCompletion.model_validate(raw)
    assert raw["id"].startswith("chatcmpl-") and raw["object"] == "chat.completion"
    assert isinstance(raw["system_fingerprint"], str)
    choice = raw["choices"][0]
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert "refusal" in choice["message"] and choice["message"]["refusal"] is None
    assert choice["finish_reason"] in ("stop", "length")
    u = raw["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["completion_tokens"] <= 8


def test_tutorial_classification_logprobs(client: OpenAI) -> None:
    response = client.chat.completions.create(
        model="gpt-4o",
        messages=CLASSIFY,
        logprobs=True,
        top_logprobs=20,
        max_tokens=3,
        temperature=0,  # type: ignore[arg-type]
    )
    first = response.choices[0].logprobs.content[0]  # type: ignore[union-attr,index]
    probs = {lp.token: math.exp(lp.logprob) for lp in first.top_logprobs}
    assert len(first.top_logprobs) == 20
    assert 0 < sum(probs.values()) <= 1 + 1e-6


@pytest.mark.parametrize("k", [0, 5, 20])
def test_top_logprobs_exactly_k_sorted(http: httpx.Client, k: int) -> None:
    raw = post(http, messages=CLASSIFY, logprobs=True, top_logprobs=k, max_tokens=6, temperature=0)
    choice = raw["choices"][0]
    content = choice["logprobs"]["content"]
    assert choice["logprobs"]["refusal"] is None
    assert len(content) == raw["usage"]["completion_tokens"]
    assert b"".join(bytes(t["bytes"]) for t in content) == choice["message"]["content"].encode()
    for t in content:
        tops = t["top_logprobs"]
        assert len(tops) == k
        lps = [a["logprob"] for a in tops]
        assert lps == sorted(lps, reverse=True)
        assert all(-9999 <= lp <= 0 for lp in lps)
        assert len({bytes(a["bytes"]) for a in tops}) == len({tuple(a["bytes"]) for a in tops})
        assert sum(math.exp(lp) for lp in lps) <= 1 + 1e-4
        if k:  # greedy: the chosen token is the top one
            assert tops[0]["bytes"] == t["bytes"] and abs(tops[0]["logprob"] - t["logprob"]) < 1e-9


def test_logprobs_without_top_logprobs_gives_empty_lists(http: httpx.Client) -> None:
    raw = post(http, messages=CLASSIFY, logprobs=True, max_tokens=3, temperature=0)
    assert all(t["top_logprobs"] == [] for t in raw["choices"][0]["logprobs"]["content"])


def test_content_parts_and_developer_role(http: httpx.Client) -> None:
    plain = post(http, messages=CLASSIFY, max_tokens=5, temperature=0)
    parts = post(
        http,
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": SYSTEM}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": CLASSIFY[1]["content"]}],
                "name": "x",
            },
        ],
        max_tokens=5,
        temperature=0,
        user="someone",
        metadata={"a": "b"},
        store=False,
    )
    assert parts["choices"][0]["message"] == plain["choices"][0]["message"]


def test_length_and_stop(http: httpx.Client) -> None:
    long = post(http, messages=TRANSLATE, max_tokens=6, temperature=0)
    assert long["choices"][0]["finish_reason"] == "length"
    assert long["usage"]["completion_tokens"] == 6
    both = post(http, messages=TRANSLATE, max_tokens=50, max_completion_tokens=3, temperature=0)
    assert both["usage"]["completion_tokens"] == 3
    text = long["choices"][0]["message"]["content"]
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    cut = post(http, messages=TRANSLATE, max_tokens=6, temperature=0, stop=[stop, "zzzz"])
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]


def test_n_and_seed(http: httpx.Client) -> None:
    greedy = post(http, messages=TRANSLATE, n=3, max_tokens=6, temperature=0, logprobs=True)
    assert [c["index"] for c in greedy["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in greedy["choices"]}) == 1
    assert greedy["usage"]["completion_tokens"] == sum(
        len(c["logprobs"]["content"]) for c in greedy["choices"]
    )
    a = post(http, messages=TRANSLATE, n=3, max_tokens=12, temperature=1.2, seed=7, logprobs=True)
    b = post(http, messages=TRANSLATE, n=3, max_tokens=12, temperature=1.2, seed=7, logprobs=True)
    assert a["choices"] == b["choices"]
    assert len({c["message"]["content"] for c in a["choices"]}) > 1
    c = post(http, messages=TRANSLATE, n=3, max_tokens=12, temperature=1.2, seed=8)
    assert [x["message"]["content"] for x in c["choices"]] != [
        x["message"]["content"] for x in a["choices"]
    ]
    unseeded = post(http, messages=TRANSLATE, n=3, max_tokens=4, temperature=1.0)
    assert len(unseeded["choices"]) == 3


def test_cached_prefix_is_reported_and_changes_nothing(http: httpx.Client) -> None:
    cold = post(
        http, messages=TRANSLATE, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
    )
    post(http, messages=CLASSIFY, max_tokens=1, temperature=0)
    warm = post(
        http, messages=TRANSLATE, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
    )
    assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    for x, y in zip(
        cold["choices"][0]["logprobs"]["content"],
        warm["choices"][0]["logprobs"]["content"],
        strict=True,
    ):
        assert x["bytes"] == y["bytes"] and abs(x["logprob"] - y["logprob"]) < 1e-4


def test_logit_bias_bans_and_forces(http: httpx.Client) -> None:
    base = post(http, messages=CLASSIFY, max_tokens=2, temperature=0, logprobs=True, top_logprobs=2)
    first = base["choices"][0]["logprobs"]["content"][0]
    ids = _token_ids(first["token"])  # the greedy first token's id: ban it, then force it
    banned = post(
        http,
        messages=CLASSIFY,
        max_tokens=1,
        temperature=0,
        logit_bias={str(ids[0]): -100},
        logprobs=True,
    )
    assert banned["choices"][0]["logprobs"]["content"][0]["bytes"] != first["bytes"]
    forced = post(
        http,
        messages=CLASSIFY,
        max_tokens=1,
        temperature=0,
        logit_bias={str(ids[0]): 100},
        logprobs=True,
    )
    assert forced["choices"][0]["logprobs"]["content"][0]["bytes"] == first["bytes"]


def test_partial_utf8_token_keeps_its_raw_bytes(http: httpx.Client) -> None:
    half = _token_ids("😀")[0]  # byte-level BPE: the emoji's first token is b"\xf0\x9f"
    body: dict[str, Any] = {
        "messages": CLASSIFY,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
    }
    raw = post(http, **body, logit_bias={str(half): 100})
    tok = raw["choices"][0]["logprobs"]["content"][0]
    assert tok["bytes"] == [0xF0, 0x9F]  # not the replacement character's bytes
    assert raw["choices"][0]["message"]["content"] == "\ufffd"
    events = sse(http, **body, logit_bias={str(half): 100})
    chunks = [c for e in events for c in e["choices"]]
    assert "".join(c["delta"].get("content") or "" for c in chunks) == "\ufffd"


def _token_ids(token: str) -> list[int]:
    from llama_cpp import Llama

    from textcoder.models import resolve_model

    llm = Llama(str(resolve_model(None).path), vocab_only=True, verbose=False)
    return list(llm.tokenize(token.encode(), add_bos=False, special=False))


# structured outputs ---------------------------------------------------------------------------


class Sentiment(BaseModel):
    label: str
    score: int


def test_json_schema_with_parse(client: OpenAI) -> None:
    done = client.chat.completions.parse(
        model="smollm2",
        messages=CLASSIFY,
        response_format=Sentiment,
        max_tokens=40,
        temperature=0,  # type: ignore[arg-type]
    )
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Sentiment)
    with pytest.raises(LengthFinishReasonError):
        client.chat.completions.parse(
            model="smollm2",
            messages=CLASSIFY,
            response_format=Sentiment,
            max_tokens=2,
            temperature=0,  # type: ignore[arg-type]
        )


def test_json_schema_enum_and_json_object(http: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"enum": ["positive", "neutral", "negative"]}},
        "required": ["label"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}
    for seed in (1, 2):
        raw = post(
            http, messages=CLASSIFY, max_tokens=30, temperature=1.0, seed=seed, response_format=fmt
        )
        assert (
            json.loads(raw["choices"][0]["message"]["content"])["label"]
            in schema["properties"]["label"]["enum"]
        )  # type: ignore[index]
    obj = post(
        http,
        messages=CLASSIFY,
        max_tokens=30,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(obj["choices"][0]["message"]["content"]), dict)


def test_nested_schema_with_refs(http: httpx.Client) -> None:
    schema = {
        "$defs": {"code": {"type": "string", "enum": ["pos", "neg"]}},
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"$ref": "#/$defs/code"},
                "minItems": 1,
                "maxItems": 2,
            },
            "note": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}},
                "required": ["ok"],
            },
        },
        "required": ["items", "note"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "nested", "schema": schema}}
    raw = post(http, messages=CLASSIFY, max_tokens=60, temperature=0.7, seed=3, response_format=fmt)
    import jsonschema

    assert raw["choices"][0]["finish_reason"] == "stop"
    jsonschema.validate(json.loads(raw["choices"][0]["message"]["content"]), schema)


def test_top_p_and_penalties(http: httpx.Client) -> None:
    greedy = post(http, messages=TRANSLATE, max_tokens=8, temperature=0)
    nucleus = post(http, messages=TRANSLATE, max_tokens=8, temperature=1.5, top_p=1e-9, seed=5)
    assert nucleus["choices"][0]["message"] == greedy["choices"][0]["message"]
    body: dict[str, Any] = {"messages": TRANSLATE, "max_tokens": 8, "temperature": 0.9, "seed": 11}
    pen = {"presence_penalty": 1.5, "frequency_penalty": -0.5, "top_p": 0.9}
    assert post(http, **body, **pen)["choices"] == post(http, **body, **pen)["choices"]


# streaming ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [None, ["ion"]])
def test_stream_equals_non_stream(http: httpx.Client, stop: list[str] | None) -> None:
    body: dict[str, Any] = {
        "messages": TRANSLATE,
        "max_tokens": 10,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 5,
        "stop": stop,
    }
    whole = post(http, **body)
    events = sse(http, **body, stream_options={"include_usage": True})
    assert len({e["id"] for e in events}) == 1 and len({e["created"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["choices"] == [] and events[-1]["usage"] == whole["usage"] | {
        "prompt_tokens_details": events[-1]["usage"]["prompt_tokens_details"]
    }
    assert all(e["usage"] is None for e in events[:-1])
    chunks = [c for e in events[:-1] for c in e["choices"]]
    content = "".join(c["delta"].get("content") or "" for c in chunks)
    logprobs = [t for c in chunks if c["logprobs"] for t in c["logprobs"]["content"]]
    finishes = [c["finish_reason"] for c in chunks if c["finish_reason"]]
    assert content == whole["choices"][0]["message"]["content"]
    assert logprobs == whole["choices"][0]["logprobs"]["content"]
    assert finishes == [whole["choices"][0]["finish_reason"]]


def test_stream_without_usage_and_with_n(http: httpx.Client, client: OpenAI) -> None:
    events = sse(http, messages=TRANSLATE, max_tokens=4, temperature=0, n=2)
    assert all("usage" not in e or e["usage"] is None for e in events)
    for i in (0, 1):
        mine = [c for e in events for c in e["choices"] if c["index"] == i]
        assert [c["finish_reason"] for c in mine if c["finish_reason"]] == ["length"]
    with client.chat.completions.create(
        model="gpt-4o",
        messages=TRANSLATE,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    ) as stream:
        chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_client_disconnect_frees_the_engine(http: httpx.Client, serve_url: str) -> None:
    with (
        httpx.Client(timeout=60) as other,
        other.stream(
            "POST",
            f"{serve_url}/chat/completions",
            json={
                "model": "smollm2",
                "messages": TRANSLATE,
                "max_tokens": 4000,
                "stream": True,
                "temperature": 1.0,
            },
        ) as r,
    ):
        for line in r.iter_lines():
            if '"content"' in line:
                break  # hang up after the first chunk
    raw = post(http, messages=CLASSIFY, max_tokens=2, temperature=0)
    assert raw["choices"][0]["finish_reason"] in ("stop", "length")


def test_concurrent_clients_all_served_identically(serve_url: str) -> None:
    results: list[Any] = []

    def one() -> None:
        with httpx.Client(timeout=120) as c:
            r = c.post(
                f"{serve_url}/chat/completions",
                json={
                    "model": "smollm2",
                    "messages": CLASSIFY,
                    "max_tokens": 3,
                    "temperature": 0,
                    "logprobs": True,
                    "top_logprobs": 5,
                },
            )
            results.append((r.status_code, r.json()["choices"]))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 4
    assert all(ch == results[0][1] for _, ch in results)


# errors ---------------------------------------------------------------------------------------

MSG = [{"role": "user", "content": "hi"}]
BAD: list[tuple[dict[str, Any], str | None]] = [
    ({"messages": MSG, "temperature": -0.1}, "temperature"),
    ({"messages": MSG, "temperature": 2.1}, "temperature"),
    ({"messages": MSG, "top_p": 1.5}, "top_p"),
    ({"messages": MSG, "n": 0}, "n"),
    ({"messages": MSG, "n": 129}, "n"),
    ({"messages": MSG, "frequency_penalty": 2.1}, "frequency_penalty"),
    ({"messages": MSG, "presence_penalty": -2.1}, "presence_penalty"),
    ({"messages": MSG, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"messages": MSG, "logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ({"messages": MSG, "top_logprobs": 2}, "top_logprobs"),
    ({"messages": MSG, "seed": 2**63}, "seed"),
    ({"messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": MSG, "max_tokens": 0}, "max_tokens"),
    ({"messages": MSG, "logit_bias": {"x": 1}}, "logit_bias.x"),
    ({"messages": MSG, "logit_bias": {"99999999": 1}}, "logit_bias.99999999"),
    ({"messages": MSG, "logit_bias": {"1": 101}}, "logit_bias.1"),
    ({"messages": MSG, "logit_bias": {"1": "a"}}, "logit_bias.1"),
    ({"messages": MSG, "logprobs": "yes"}, "logprobs"),
    ({"messages": []}, "messages"),
    ({}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": MSG, "response_format": {"type": "xml"}}, "response_format.type"),
    ({"messages": MSG, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    (
        {
            "messages": MSG,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "nonsense"}},
            },
        },
        "response_format.json_schema.schema",
    ),
    (
        {
            "messages": MSG,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": {"type": "integer", "multipleOf": 3}},
            },
        },
        "response_format.json_schema.schema",
    ),
    ({"messages": MSG, "stream_options": {"include_usage": True}}, "stream_options"),
    ({"messages": MSG, "functions": [{"name": "f"}]}, "functions"),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x"}}],
                }
            ]
        },
        "messages[0].content[0]",
    ),
    ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
]


@pytest.mark.parametrize(("extra", "param"), BAD, ids=[p or "none" for _, p in BAD])
@pytest.mark.parametrize("stream", [False, True])
def test_bad_requests_are_400_in_the_envelope(
    http: httpx.Client, extra: dict[str, Any], param: str, stream: bool
) -> None:
    body = {"model": "smollm2", **extra}
    if stream:
        body["stream"] = True
        if param == "stream_options":
            pytest.skip("stream_options is valid with stream")
    r = http.post("/chat/completions", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert err["code"] is None or isinstance(err["code"], str)
    assert err["message"]


def test_unsupported_features_say_so(client: OpenAI) -> None:
    with pytest.raises(BadRequestError, match="not supported"):
        client.chat.completions.create(
            model="smollm2",
            messages=MSG,
            functions=[{"name": "f"}],  # type: ignore[arg-type,list-item]
        )
    with pytest.raises(BadRequestError, match="images are not supported"):
        client.chat.completions.create(
            model="smollm2",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "http://x"}}],
                }
            ],
        )


def test_other_errors(http: httpx.Client, client: OpenAI) -> None:
    r = http.post(
        "/chat/completions",
        content=b'{"model": "smollm2", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.post("/chat/completions", json={"messages": MSG})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    with pytest.raises(NotFoundError) as nf:
        client.chat.completions.create(model="gpt-5", messages=MSG)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(BadRequestError) as big:
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert big.value.code == "context_length_exceeded" and "8192" in big.value.message
    r = http.post("/chat/completions", content=b"x" * (4 * 1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = http.get("/nowhere")
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_api_key_parallel_engines_and_refusing_open_binds(serve_url: str) -> None:
    with ServeProcess("--api-key", "sekret", "--threads", "1", "--parallel", "2") as server:
        assert httpx.get(f"{server.base}/health").status_code == 200
        for key in (None, "wrong"):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            r = httpx.get(f"{server.url}/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
        ok = OpenAI(base_url=server.url, api_key="sekret", max_retries=0)
        assert ok.chat.completions.create(model="smollm2", messages=MSG, max_tokens=2).choices  # type: ignore[arg-type]
        # two engines answering at once give what the one-engine server gives
        body = {"model": "smollm2", "messages": CLASSIFY, "max_tokens": 3, "temperature": 0}
        body |= {"logprobs": True, "top_logprobs": 5}
        answers: list[Any] = []

        def one() -> None:
            r = httpx.post(
                f"{server.url}/chat/completions",
                json=body,
                headers={"Authorization": "Bearer sekret"},
                timeout=120,
            )
            answers.append(r.json()["choices"])

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        single = httpx.post(f"{serve_url}/chat/completions", json=body, timeout=120).json()
        assert answers == [single["choices"]] * 4
    from textcoder.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 1


# clients that go away, signals --------------------------------------------------------------


def _endless(n: int = 8) -> dict[str, Any]:
    """A request no test could wait for: n answers of 8000 tokens with the turn's end banned."""
    from llama_cpp import Llama

    from textcoder.models import resolve_model

    llm = Llama(str(resolve_model(None).path), vocab_only=True, verbose=False)
    ends = {llm.token_eos(), *llm.tokenize(b"<|im_end|><|endoftext|>", add_bos=False, special=True)}
    return {
        "model": "smollm2",
        "messages": TRANSLATE,
        "max_tokens": 8000,
        "n": n,
        "temperature": 1.0,
        "logit_bias": {str(t): -100 for t in ends},
    }


def _wait_busy(base: str, busy: int, deadline_s: float = 120.0) -> None:
    """Poll /health until `busy` engines are answering (a deadline, not a wait on a guess)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if httpx.get(f"{base}/health", timeout=10).json()["engines_busy"] == busy:
            return
        time.sleep(0.05)  # polling interval
    raise AssertionError(f"the server never had {busy} busy engines")


def _post_raw(port: int, body: dict[str, Any]) -> socket.socket:
    """Send a plain (non-streamed) chat request on a raw socket and leave it open."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def test_plain_request_whose_client_hangs_up_frees_the_engine(
    http: httpx.Client, serve_url: str
) -> None:
    base = serve_url.removesuffix("/v1")
    sock = _post_raw(int(base.rsplit(":", 1)[1]), _endless())
    _wait_busy(base, 1)
    sock.close()  # the client gives up, as the openai client does on its timeout
    _wait_busy(base, 0)
    raw = post(http, messages=CLASSIFY, max_tokens=2, temperature=0)  # the engine is free
    assert raw["choices"][0]["finish_reason"] in ("stop", "length")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_server_with_requests_in_flight(sig: signal.Signals) -> None:
    with ServeProcess("--threads", "1", "--shutdown-grace", "1") as server:
        results: list[Any] = []

        def endless() -> None:
            try:
                results.append(httpx.post(f"{server.url}/chat/completions", json=_endless(),
                                          timeout=600).status_code)  # fmt: skip
            except httpx.TransportError as exc:
                results.append(exc)

        client = threading.Thread(target=endless)
        client.start()
        _wait_busy(server.base, 1)
        assert server.proc is not None
        server.proc.send_signal(sig)
        deadline = time.monotonic() + 60  # the request alone would run for many minutes
        while server.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval
        assert server.proc.poll() is not None, "the server did not stop"
        client.join(60)
        assert results, "the client was left hanging"


# structured outputs: arrays of categories -------------------------------------------------


def test_unique_enum_array_holds_each_category_at_most_once(http: httpx.Client) -> None:
    cats = ["morality", "economy", "conflict", "human interest"]
    frames = {"type": "array", "items": {"type": "string", "enum": cats}, "uniqueItems": True}
    schema = {
        "type": "object",
        "properties": {"frames": {**frames, "maxItems": len(cats)}},
        "required": ["frames"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "frames", "schema": schema}}
    morality = {str(t): 5 for t in _token_ids('"morality')}  # push the model to repeat it
    for seed in range(4):
        raw = post(http, messages=CLASSIFY, max_tokens=80, temperature=1.3, seed=seed,
                   response_format=fmt, logit_bias=morality)  # fmt: skip
        assert raw["choices"][0]["finish_reason"] == "stop"
        got = json.loads(raw["choices"][0]["message"]["content"])["frames"]
        assert len(got) == len(set(got)) <= len(cats) and set(got) <= set(cats)
        assert got == sorted(got, key=cats.index)  # an ordered subset
    bounded = {**schema, "properties": {"frames": {**frames, "minItems": 1, "maxItems": 2}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "frames", "schema": bounded}}
    for seed in range(3):
        raw = post(http, messages=CLASSIFY, max_tokens=80, temperature=1.3, seed=seed,
                   response_format=fmt)  # fmt: skip
        got = json.loads(raw["choices"][0]["message"]["content"])["frames"]
        assert 1 <= len(got) <= 2 and len(got) == len(set(got))
    free = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": free}}
    r = http.post("/chat/completions", json={"model": "smollm2", "messages": MSG,
                                             "response_format": fmt})  # fmt: skip
    assert r.status_code == 400 and "uniqueItems" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "unsupported_schema"


# legacy completions and /tokenize ----------------------------------------------------------


def test_tokenize_renders_messages_as_chat_evaluates_them(
    http: httpx.Client, serve_url: str
) -> None:
    base = serve_url.removesuffix("/v1")
    tok = httpx.post(f"{base}/tokenize", json={"model": "smollm2", "messages": CLASSIFY}).json()
    chat = post(http, messages=CLASSIFY, max_tokens=1, temperature=0)
    assert tok["count"] == len(tok["tokens"]) == chat["usage"]["prompt_tokens"]
    assert tok["max_model_len"] == 8192
    plain = httpx.post(f"{base}/tokenize", json={"prompt": " agree", "add_special_tokens": False})
    assert plain.json()["tokens"] == _token_ids(" agree")
    bad = httpx.post(f"{base}/tokenize", json={"prompt": "x", "messages": CLASSIFY})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_completions_echo_logprobs_and_prompt_logprobs(client: OpenAI, serve_url: str) -> None:
    base = serve_url.removesuffix("/v1")
    prompt = httpx.post(f"{base}/tokenize", json={"messages": CLASSIFY}).json()["tokens"]
    labels = [prompt + _token_ids(v) for v in ("positive", " negative", " neutral")]
    done = client.completions.create(
        model="smollm2", prompt=labels, echo=True, logprobs=2, max_tokens=0,
        extra_body={"prompt_logprobs": 1},
    )  # fmt: skip
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert done.usage is not None and done.usage.prompt_tokens == sum(map(len, labels))
    for choice, seq in zip(done.choices, labels, strict=True):
        lp = choice.logprobs
        assert lp is not None and lp.token_logprobs is not None and lp.top_logprobs is not None
        assert len(lp.tokens or []) == len(seq) and lp.token_logprobs[0] is None
        assert all(x <= 0 for x in lp.token_logprobs[1:])  # type: ignore[operator]
        assert all(1 <= len(t) <= 3 for t in lp.top_logprobs[1:])
        assert choice.text == "".join(lp.tokens or []) and choice.finish_reason == "length"
        vllm = choice.model_extra["prompt_logprobs"]  # type: ignore[index]
        assert vllm[0] is None and len(vllm) == len(seq)
        for pos in range(1, len(seq)):
            entry = vllm[pos][str(seq[pos])]
            assert entry["logprob"] == lp.token_logprobs[pos] and entry["rank"] >= 1
    # the shared prompt scores the same in every choice, and again from the cache
    again = client.completions.create(model="smollm2", prompt=labels[1], echo=True, logprobs=0,
                                      max_tokens=0)  # fmt: skip
    first = again.choices[0].logprobs.token_logprobs  # type: ignore[union-attr]
    assert first == pytest.approx(done.choices[1].logprobs.token_logprobs, abs=1e-6)  # type: ignore[union-attr]


def test_completions_generate_and_refuse(client: OpenAI, http: httpx.Client) -> None:
    done = client.completions.create(model="smollm2", prompt="The capital of France is",
                                     max_tokens=4, temperature=0, logprobs=2)  # fmt: skip
    choice = done.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.text
    assert choice.logprobs is not None and len(choice.logprobs.tokens or []) <= 4
    for body, param in [
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "stream": True, "prompt_logprobs": 1}, "prompt_logprobs"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": [], "echo": True}, "prompt"),
        ({"prompt": "x", "logprobs": 21}, "logprobs"),
    ]:
        r = http.post("/completions", json={"model": "smollm2", **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
