"""The embedded model end to end: mechanics only (shapes, sums, determinism), never accuracy."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from textcoder import Codebook, Coder
from textcoder.backends.base import CompletionParams
from textcoder.models import list_models, resolve_model

TEXTS = ["I loved the new Batman movie!", "The bus leaves at 9.", "Worst service ever."]


def test_embedded_model_is_found_without_network() -> None:
    model = resolve_model(None)
    assert model.name == "smollm2" and model.path.is_file() and model.path.suffix == ".gguf"
    assert any(m.name == "smollm2" for m in list_models())
    assert resolve_model(str(model.path)).path == model.path


@pytest.mark.parametrize("scoring", ["logprobs", "text"])
def test_code_frame_on_embedded_model(
    local_backend, sentiment_book: Codebook, scoring: str
) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(sentiment_book, backend=local_backend, scoring=scoring)
    df = pd.DataFrame({"id": [10, 11, 12, 13], "text": [*TEXTS, "   "]})
    out = coder.code_frame(df, progress=False)
    assert list(out.columns[:2]) == ["id", "text"]
    labels = sentiment_book.variables[0].labels
    pcols = [f"sentiment_p_{lab}" for lab in labels] + ["sentiment_outside"]
    for col in ["sentiment", *pcols, "sentiment_raw", "sentiment_confidence", "sentiment_entropy"]:
        assert col in out.columns
    sums = out[pcols].sum(axis=1)
    assert ((sums - 1).abs() < 1e-6).all()
    assert set(out["sentiment"]) <= {*labels, "<invalid>"}
    # the empty text: coded invalid, nothing sent, other rows still coded
    assert out.loc[3, "sentiment"] == "<invalid>" and out.loc[3, "sentiment_outside"] == 1.0
    assert "empty" in out.loc[3, "sentiment_error"]
    assert (out.loc[:2, "sentiment_error"] == "").all()
    assert coder.last_stats is not None and coder.last_stats.requests == 3


def test_same_text_same_answer(local_backend, sentiment_book: Codebook) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(sentiment_book, backend=local_backend, scoring="logprobs")
    a = coder.code(TEXTS[0])
    coder.code(TEXTS[1])  # a different text in between must not leak through the KV cache
    b = coder.code(TEXTS[0])
    assert a.raw == b.raw
    assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_logprobs_are_a_distribution(local_backend) -> None:  # type: ignore[no-untyped-def]
    messages = [{"role": "user", "content": "Say yes."}]
    c = local_backend.complete_sync(messages, CompletionParams(max_tokens=4, top_logprobs=5))
    assert 1 <= len(c.tokens) <= 4 and c.completion_tokens == len(c.tokens)
    for tok in c.tokens:
        assert len(tok.top) == 5
        lps = [lp for _, lp in tok.top]
        assert lps == sorted(lps, reverse=True)
        assert sum(math.exp(lp) for lp in lps) <= 1 + 1e-6
        assert tok.logprob == pytest.approx(lps[0])  # greedy: the chosen token is the top one
    assert c.prompt_tokens > 0 and c.finish_reason in ("stop", "length")


def test_overlong_text_fails_alone(local_backend, sentiment_book: Codebook) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(sentiment_book, backend=local_backend, scoring="text")
    huge = "word " * (local_backend.engine.n_ctx + 10)
    results = coder.code_texts([huge, TEXTS[1]], progress=False)
    assert results[0].error and "context" in results[0].error
    assert results[1].error is None and results[1].label


def test_cached_prompt_scores_like_a_cold_one(local_backend) -> None:  # type: ignore[no-untyped-def]
    """The same request twice in a row (the whole prompt cached) gives the same logprobs."""
    messages = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    params = CompletionParams(max_tokens=2, top_logprobs=5)
    local_backend.complete_sync([{"role": "user", "content": "Something else entirely."}], params)
    cold = local_backend.complete_sync(messages, params)
    warm = local_backend.complete_sync(messages, params)
    assert len(warm.tokens) == len(cold.tokens) > 0
    for a, b in zip(cold.tokens, warm.tokens, strict=True):
        assert [x for x, _ in a.top] == [x for x, _ in b.top]
        assert [lp for _, lp in a.top] == pytest.approx([lp for _, lp in b.top], abs=1e-6)


FRAMES = ["morality", "economy", "conflict", "human interest"]


def _frames_format(**array: object) -> dict[str, object]:
    items = {"type": "array", "items": {"type": "string", "enum": FRAMES}, **array}
    schema = {
        "type": "object",
        "properties": {"frames": items},
        "required": ["frames"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "frames", "schema": schema}}


def test_unique_enum_array_and_refused_keywords_in_the_backend(local_backend) -> None:  # type: ignore[no-untyped-def]
    """The backend enforces `response_format` as the server does: a multi-label array holds
    each category at most once, and a keyword no grammar enforces is refused by name."""
    import json

    from textcoder._exceptions import RequestError

    messages = [{"role": "user", "content": "Which frames does 'Taxes rise again' use? JSON."}]
    fmt = _frames_format(uniqueItems=True, maxItems=len(FRAMES))
    for seed in range(3):
        params = CompletionParams(
            max_tokens=80, temperature=1.3, seed=seed, logprobs=False,
            extra={"response_format": fmt},
        )  # fmt: skip
        c = local_backend.complete_sync(messages, params)
        got = json.loads(c.text)["frames"]
        assert c.finish_reason == "stop" and len(got) == len(set(got)) <= len(FRAMES)
    bad = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer",
                                                                          "multipleOf": 3}}}  # fmt: skip
    with pytest.raises(RequestError, match="multipleOf"):
        local_backend.complete_sync(messages, CompletionParams(extra={"response_format": bad}))


def test_backend_answers_as_the_server_does(local_backend, serve_url: str) -> None:  # type: ignore[no-untyped-def]
    """One generation path: the same request gives the same text and logprobs in process and
    from `textcoder serve`."""
    import httpx

    messages = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    params = CompletionParams(max_tokens=6, temperature=0, top_logprobs=3, extra={"stop": ["."]})
    mine = local_backend.complete_sync(messages, params)
    body = {"model": "smollm2", "messages": messages, "max_tokens": 6, "temperature": 0,
            "logprobs": True, "top_logprobs": 3, "stop": ["."]}  # fmt: skip
    theirs = httpx.post(f"{serve_url}/chat/completions", json=body, timeout=120).json()
    choice = theirs["choices"][0]
    assert mine.text == choice["message"]["content"]
    assert mine.finish_reason == choice["finish_reason"]
    lps = [t["logprob"] for t in choice["logprobs"]["content"]]
    assert [t.logprob for t in mine.tokens] == pytest.approx(lps, abs=1e-6)
