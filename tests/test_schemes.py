"""Multi-label questions, joint JSON requests, ordinal summaries, vote shares and fallbacks."""

from __future__ import annotations

import json

import pytest

from textcoder import Codebook
from textcoder.prompt import joint_messages, multi_label_messages
from textcoder.scoring.joint import joint_schema
from textcoder.scoring.result import INVALID, VariableResult, ordinal_summary, with_fallback
from textcoder.scoring.sample import vote_shares

from .conftest import EXAMPLES

BOOK = Codebook.from_yaml(EXAMPLES / "headlines.yaml")


def test_headlines_codebook_has_three_kinds_of_variable() -> None:
    topic, tone, frames = BOOK.variables
    assert (topic.scale, topic.multi) == ("nominal", False)
    assert tone.scale == "ordinal" and tone.labels[0] == "very negative"
    assert frames.multi and "economic consequences" in frames.labels


def test_multi_label_asks_yes_or_no_per_category() -> None:
    frames = BOOK.variable("frames")
    msgs = multi_label_messages(BOOK, frames, "conflict", "A headline")
    assert msgs[0]["role"] == "system" and "'conflict'" in msgs[0]["content"]
    assert "yes or no" in msgs[0]["content"]
    # example 1 has conflict; example 2 does not
    assert [m["content"] for m in msgs if m["role"] == "assistant"] == ["yes", "no"]
    assert msgs[-1] == {"role": "user", "content": "Text: '''A headline'''"}
    other = multi_label_messages(BOOK, frames, "human interest", "A headline")
    assert [m["content"] for m in other if m["role"] == "assistant"] == ["no", "yes"]


def test_joint_request_schema_and_examples() -> None:
    schema = joint_schema(BOOK)
    assert schema["required"] == ["topic", "tone", "frames"]
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["topic"]["enum"] == BOOK.variable("topic").labels
    assert props["frames"]["type"] == "array"
    msgs = joint_messages(BOOK, "A headline")
    first = json.loads(msgs[2]["content"])
    assert first == {
        "topic": "politics",
        "tone": "negative",
        "frames": ["conflict", "economic consequences"],
    }


def test_ordinal_summary() -> None:
    labels = ["1", "2", "3", "4", "5"]
    expected, median = ordinal_summary({"1": 0.1, "2": 0.1, "3": 0.2, "4": 0.4, "5": 0.2}, labels)
    assert expected == pytest.approx(0.1 + 0.2 + 0.6 + 1.6 + 1.0)
    assert median == 4
    assert 1 <= expected <= 5
    # renormalised over the categories, without `other`
    e2, m2 = ordinal_summary({"1": 0.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.5}, labels)
    assert (e2, m2) == (5.0, 5)


def test_vote_shares() -> None:
    var = BOOK.variable("topic")
    r = vote_shares(["politics", "Politics.", "economy", "no idea"], var)
    assert r.label == "politics" and r.extra["n"] == 4
    assert r.probs["politics"] == 0.5 and r.probs["economy"] == 0.25 and r.other == 0.25
    assert sum(r.probs.values()) + r.other == pytest.approx(1.0)


def test_fallback_only_when_probabilities_exist() -> None:
    raw = VariableResult(INVALID, {"a": 0.2, "b": 0.5}, 0.3, raw="The answer is b")
    fb = with_fallback(raw)
    assert fb.label == "b" and fb.extra["fallback"] is True and fb.raw == "The answer is b"
    none = VariableResult(INVALID, {"a": 0.0, "b": 0.0}, 1.0, raw="???")
    assert with_fallback(none).label == INVALID
    ok = VariableResult("a", {"a": 0.2, "b": 0.5}, 0.3)
    assert with_fallback(ok) is ok
