"""From top_logprobs and free-text answers to category probabilities."""

from __future__ import annotations

import math

import pytest

from textcoder import Codebook
from textcoder.backends.base import Completion, TokenLogprob
from textcoder.scoring import INVALID, category_mass, parse_label, score_completion

# The seed tutorial's 20 top_logprobs for "I loved the new Batman movie!" (gpt-4o).
SEED_TOP = {
    "positive": 0.9998764455604927,
    "Positive": 0.0001233945049762016,
    "_positive": 4.139424490804616e-08,
    " positive": 3.65302929161789e-08,
    "-positive": 4.362921314631966e-09,
    "posit": 2.9985890437551646e-09,
    "``": 1.6050290551017823e-09,
    "```": 1.1031192617194595e-09,
    "negative": 7.58162041807597e-10,
    "**": 6.690756535524169e-10,
    "'''": 3.160489599914966e-10,
    "`": 2.789122282575785e-10,
    "''": 1.9169338420513415e-10,
    "positivo": 1.9169338420513415e-10,
    "'": 1.317488077793474e-10,
    '"': 7.052005505764733e-11,
    "\u200b": 5.492107410113433e-11,
    "pos": 2.9397132579170476e-11,
    "\u200b\u200b": 2.9397132579170476e-11,
    "POS": 2.9397132579170476e-11,
}

BOOK = Codebook.from_yaml_text(
    "instructions: x\ncategories:\n  - positive\n  - label: negative\n    aliases: [neg]\n"
    "  - neutral\n"
)
VAR = BOOK.variables[0]


def _answer(*steps: tuple[str, dict[str, float]]) -> Completion:
    tokens = tuple(
        TokenLogprob(tok, math.log(top[tok]), tuple((t, math.log(p)) for t, p in top.items()))
        for tok, top in steps
    )
    return Completion(text="".join(t.token for t in tokens), tokens=tokens)


def test_seed_variants_are_summed_per_category() -> None:
    result = score_completion(_answer(("positive", SEED_TOP)), VAR, "logprobs")
    seed_sum = sum(
        SEED_TOP[k] for k in ("positive", "Positive", "_positive", " positive", "-positive")
    )
    # the seed's five variants, plus the unique prefixes 'posit', 'pos', 'POS' (~3e-9)
    assert result.probs["positive"] == pytest.approx(seed_sum, abs=1e-8)
    assert result.probs["negative"] == pytest.approx(7.58162041807597e-10, rel=1e-6)
    assert result.probs["neutral"] == 0.0
    assert result.label == "positive"
    assert sum(result.probs.values()) + result.other == pytest.approx(1.0, abs=1e-12)
    assert result.other == pytest.approx(1 - sum(result.probs.values()))
    # 'positivo' is not 'positive': it stays in other
    assert result.other > SEED_TOP["positivo"]


def test_alias_counts_for_its_category() -> None:
    mass = category_mass(_answer(("neg", {"neg": 0.6, "pos": 0.3, "x": 0.1})).tokens, VAR)
    assert mass == pytest.approx({"positive": 0.3, "negative": 0.6, "neutral": 0.0})


def test_shared_first_token_is_split_by_the_next_position() -> None:
    scale = Codebook.from_yaml_text(
        "instructions: x\ncategories: [strongly agree, agree, strongly disagree]\n"
    ).variables[0]
    answer = _answer(
        ("strongly", {"strongly": 0.8, "agree": 0.15, "Str": 0.05}),
        (" agree", {" agree": 0.75, " disagree": 0.25}),
    )
    mass = category_mass(answer.tokens, scale)
    assert mass["strongly agree"] == pytest.approx(0.8 * 0.75)
    assert mass["strongly disagree"] == pytest.approx(0.8 * 0.25)
    assert mass["agree"] == pytest.approx(0.15)


def test_no_logprobs_is_an_error_not_a_crash() -> None:
    result = score_completion(Completion(text="positive"), VAR, "logprobs")
    assert result.label == "positive"
    assert result.error and "logprobs" in result.error
    assert result.other == 1.0


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("positive", "positive"),
        ("Positive", "positive"),
        ("  NEGATIVE. ", "negative"),
        ('"neutral"', "neutral"),
        ("neg", "negative"),
        ("Negative - the author is angry", "negative"),
        ("pos", "positive"),
        ("ne", None),
        ("The sentiment is positive", None),
        ("", None),
    ],
)
def test_parse_label(answer: str, label: str | None) -> None:
    cat = parse_label(answer, VAR)
    assert (cat.label if cat else None) == label


def test_text_scoring_gives_probability_one() -> None:
    ok = score_completion(Completion(text="Neutral."), VAR, "text")
    assert ok.label == "neutral" and ok.probs["neutral"] == 1.0 and ok.other == 0.0
    bad = score_completion(Completion(text="I cannot tell"), VAR, "text")
    assert bad.label == INVALID and bad.other == 1.0 and bad.raw == "I cannot tell"
