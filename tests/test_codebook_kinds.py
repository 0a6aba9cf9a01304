"""Several variables, multi-label, ordinal scales, sampling and capability detection, run on
the embedded model, on `textcoder serve`, and on a loopback server that refuses logprobs."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from textcoder import Codebook, Coder

from .flaky_server import FlakyServer

# Example texts recur as texts to code: the model copies the worked answers, confidently.
TWO_VARS = """\
instructions: Code the sentence.
mode: {mode}
variables:
  - name: language
    categories: [english, german]
  - name: mood
    categories: [happy, sad]
examples:
  - text: "I am very happy today"
    codes: {{language: english, mood: happy}}
  - text: "What a wonderful day"
    codes: {{language: english, mood: happy}}
  - text: "I love this sunny morning"
    codes: {{language: english, mood: happy}}
"""
TEXTS = ["I am very happy today", "What a wonderful day", "I love this sunny morning"]


def book(mode: str) -> Codebook:
    return Codebook.from_yaml_text(TWO_VARS.format(mode=mode))


def test_per_variable_and_joint_agree_where_confident(serve_url: str) -> None:
    per = Coder(book("per-variable"), base_url=serve_url, scoring="logprobs")
    joint = Coder(book("joint"), base_url=serve_url)
    assert joint.capabilities.json_schema is True
    confident = 0
    for text in TEXTS:
        a, b = per.code(text), joint.code(text)
        for var in ("language", "mood"):
            assert b[var].label in ("english", "german", "happy", "sad")
            json.loads(b[var].raw)  # the joint answer is the JSON the schema asked for
            if a[var].confidence >= 0.8:
                confident += 1
                assert a[var].label == b[var].label, (text, var)
    assert confident >= 2  # the test compared something
    per.close()
    joint.close()


def test_joint_falls_back_to_per_variable_where_json_schema_is_refused() -> None:
    with FlakyServer(labels=("english", "german")) as server:
        coder = Coder(book("joint"), base_url=server.url, scoring="text")
        assert coder.capabilities.json_schema is False
        assert any("json_schema" in n for n in coder.notes)
        result = coder.code("Hallo Welt")
        assert result["language"].label in ("english", "german")
        coder.close()


FRAMES = """\
instructions: Which frames does the headline use?
variables:
  - name: frames
    multi: true
    categories: [{cats}]
"""


def test_multi_label_probabilities_are_independent(local_backend) -> None:  # type: ignore[no-untyped-def]
    text = "Factory closure leaves 800 workers without jobs"
    three = Codebook.from_yaml_text(FRAMES.format(cats="conflict, economy, people"))
    two = Codebook.from_yaml_text(FRAMES.format(cats="conflict, people"))
    r3 = Coder(three, backend=local_backend, scoring="exact").code(text)["frames"]
    r2 = Coder(two, backend=local_backend, scoring="exact").code(text)["frames"]
    # a category's probability comes from its own yes/no question, whatever else is in the scheme
    assert r3.probs["conflict"] == pytest.approx(r2.probs["conflict"], abs=1e-6)
    assert r3.probs["people"] == pytest.approx(r2.probs["people"], abs=1e-6)
    assert all(0 < p < 1 for p in r3.probs.values())
    assert r3.label == ";".join(c for c in ("conflict", "economy", "people") if r3.probs[c] >= 0.5)
    assert r3.other == 0.0


def test_ordinal_expected_and_median_in_range(local_backend) -> None:  # type: ignore[no-untyped-def]
    scale = Codebook.from_yaml_text(
        "instructions: How much does the author agree that taxes should rise?\n"
        "scale: ordinal\n"
        "categories: [strongly disagree, disagree, neutral, agree, strongly agree]\n"
    )
    coder = Coder(scale, backend=local_backend, scoring="exact")
    df = pd.DataFrame({"text": ["Raise taxes now!", "Never raise taxes.", "Taxes exist."]})
    out = coder.code_frame(df, progress=False)
    assert out["label_expected"].between(1, 5).all()
    assert out["label_median"].isin([1, 2, 3, 4, 5]).all()
    probs = out[[c for c in out.columns if c.startswith("label_p_") and c != "label_outside"]]
    manual = (probs.to_numpy() * [1, 2, 3, 4, 5]).sum(axis=1)
    assert manual == pytest.approx(out["label_expected"].to_numpy())


def test_sample_with_a_fixed_seed_is_reproducible(local_backend, sentiment_book: Codebook) -> None:  # type: ignore[no-untyped-def]
    texts = ["I loved the new Batman movie!", "The bus leaves at 9."]

    def run(seed: int) -> list[dict[str, float]]:
        coder = Coder(sentiment_book, backend=local_backend, scoring="sample", n=4, seed=seed)
        results = coder.code_texts(texts, progress=False)
        for r in results:
            assert r.variables["sentiment"].extra["n"] == 4
            total = sum(r.probs.values()) + r.other
            assert math.isclose(total, 1.0) and all(
                p in (0, 0.25, 0.5, 0.75, 1) for p in r.probs.values()
            )
        return [r.probs for r in results]

    assert run(7) == run(7)


def test_capability_detection_picks_sample_without_logprobs() -> None:
    book1 = Codebook.from_yaml_text("instructions: x\ncategories: [positive, negative, neutral]\n")
    with FlakyServer(refuse_logprobs=True) as server:
        coder = Coder(book1, base_url=server.url, model="some-model", n=3)
        assert coder.capabilities.logprobs is False
        assert coder.scoring == "sample"
        df = pd.DataFrame({"text": ["good", "bad"]})
        out = coder.code_frame(df, progress=False)
        assert (out["label_n"] == 3).all()
        assert out["label"].isin(["positive", "negative", "neutral"]).all()
        manifest = coder.manifest()
        assert manifest["capabilities"]["logprobs"] is False and manifest["scoring"] == "sample"
        coder.close()
    with FlakyServer() as server:
        coder = Coder(book1, base_url=server.url, model="some-model")
        assert coder.capabilities.logprobs is True and coder.scoring == "logprobs"
        coder.close()


def test_joint_on_the_embedded_engine_is_enforced_by_grammar(local_backend) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(book("joint"), backend=local_backend, scoring="text")
    assert coder.capabilities.json_schema is True and not coder.notes
    result = coder.code("Ich bin heute sehr traurig")
    answer = json.loads(result["language"].raw)
    assert answer in ("english", "german")
    assert result["language"].label == answer and result["mood"].label in ("happy", "sad")
