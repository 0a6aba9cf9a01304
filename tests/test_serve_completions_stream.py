"""Streamed legacy completions (`stream: true` on /v1/completions) through the unchanged
`openai` client and as raw server-sent events: the same text and logprobs as the whole
answer, chunk by chunk, and the usage chunk of `stream_options.include_usage`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types import Completion

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(serve_url: str) -> OpenAI:
    return OpenAI(base_url=serve_url, api_key="none", max_retries=0)


def test_stream_equals_the_whole_answer(client: OpenAI) -> None:
    whole = client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=12,
                                      temperature=0, logprobs=2)  # fmt: skip
    chunks = list(client.completions.create(
        model="smollm2", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=2, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    assert all(isinstance(c, Completion) and c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens  # type: ignore[union-attr]
    assert all(c.usage is None for c in body)
    assert [c.choices[0].finish_reason for c in body][-1] == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in body[:-1])
    assert "".join(c.choices[0].text for c in body) == whole.choices[0].text
    tokens, lps, offsets, tops = [], [], [], []
    for c in body:
        lp = c.choices[0].logprobs
        assert lp is not None  # every chunk carries its own tokens' logprobs
        tokens += lp.tokens or []
        lps += lp.token_logprobs or []
        offsets += lp.text_offset or []
        tops += lp.top_logprobs or []
    want = whole.choices[0].logprobs
    assert want is not None
    assert tokens == want.tokens and offsets == want.text_offset
    assert lps == pytest.approx(want.token_logprobs, abs=1e-6)
    assert [sorted(t) for t in tops] == [sorted(t) for t in want.top_logprobs or []]


def test_stream_with_echo_n_and_several_prompts(serve_url: str) -> None:
    body: dict[str, Any] = {"model": "smollm2", "prompt": [PROMPT, "Once upon a time"],
                            "max_tokens": 5, "n": 2, "seed": 7, "echo": True, "stream": True}  # fmt: skip
    with httpx.stream("POST", f"{serve_url}/completions", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        blocks = r.read().decode().split("\n\n")
    assert blocks[-2:] == ["data: [DONE]", ""]
    texts: dict[int, str] = {}
    finished: dict[int, str] = {}
    for block in blocks[:-2]:
        chunk = json.loads(block.removeprefix("data: "))
        (choice,) = chunk["choices"]
        assert "usage" not in chunk and choice["logprobs"] is None
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
        if choice["finish_reason"] is not None:
            finished[choice["index"]] = choice["finish_reason"]
    assert sorted(texts) == sorted(finished) == [0, 1, 2, 3]
    assert texts[0].startswith(PROMPT) and texts[3].startswith("Once upon a time")
    whole = httpx.post(f"{serve_url}/completions", json={**body, "stream": False}, timeout=120)
    assert [c["text"] for c in whole.json()["choices"]] == [texts[i] for i in range(4)]


def test_stream_echo_with_logprobs_scores_the_prompt_first(client: OpenAI) -> None:
    chunks = list(client.completions.create(model="smollm2", prompt=PROMPT, max_tokens=3,
                                            echo=True, logprobs=1, stream=True))  # fmt: skip
    first = chunks[0].choices[0]
    assert first.text == PROMPT and first.logprobs is not None
    assert first.logprobs.token_logprobs[0] is None  # type: ignore[index]
    assert "".join(first.logprobs.tokens or []) == PROMPT
    assert chunks[1].choices[0].logprobs.text_offset[0] == len(PROMPT)  # type: ignore[union-attr,index]
