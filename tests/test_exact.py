"""Scoring `exact` on the embedded model: brute-force equality, order independence, the cache.

Mechanics only: probabilities equal an independent from-scratch computation, sum to 1, do not
depend on the order of texts, and leave the engine's generation state intact.
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textcoder import Codebook, Coder
from textcoder._exceptions import UsageError
from textcoder.backends.base import CompletionParams
from textcoder.output import prob_column
from textcoder.prompt import build_messages, prefix_messages
from textcoder.scoring.exact import label_variants, variants_for

from .conftest import EXAMPLES, textcoder

SCALE = ["strongly agree", "agree", "neither agree nor disagree", "disagree", "strongly disagree"]
TEXTS = ["Taxes should be lower.", "I like trains", "  Schools need more money!", "Ok."]


@pytest.fixture(scope="module")
def likert() -> Codebook:
    return Codebook.from_dict(
        {
            "instructions": "Code how much the author agrees that public spending should rise.",
            "categories": SCALE,
            "variable": "stance",
            "examples": [{"text": "Spend more on parks!", "codes": {"stance": "strongly agree"}}],
        }
    )


def brute_force(model_path: Path, tokens: list[int], variant_tokens: list[int]) -> float:
    """log P(variant | prompt) from a fresh llama-cpp-python model, nothing cached between calls.

    The prompt and the variant go in one batch (the scorer never decodes a lone token:
    llama.cpp's batched and single-token kernels differ by ~1e-3 nats on this model).
    """
    llm = _reference(model_path)
    llm.reset()
    llm.eval([*tokens, *variant_tokens[:-1]])
    total = 0.0
    for i, tok in enumerate(variant_tokens):
        z = np.asarray(llm.scores[len(tokens) - 1 + i], dtype=np.float64)
        z = z - z.max()
        total += float(z[tok] - np.log(np.exp(z).sum()))
    return total


_REF: dict[Path, object] = {}


def _reference(model_path: Path):  # type: ignore[no-untyped-def]
    from textcoder.backends.llama.load import load_llama

    if model_path not in _REF:
        llm = load_llama(
            str(model_path),
            n_ctx=512,
            logits_all=True,
            n_threads=2,
            verbose=False,
        )
        weakref.finalize(llm, llm.close)  # closed before llama_cpp is torn down at exit
        _REF[model_path] = llm
    return _REF[model_path]


def test_label_variants() -> None:
    assert label_variants("strongly agree") == [
        "strongly agree",
        " strongly agree",
        "Strongly agree",
        " Strongly agree",
    ]
    assert len(label_variants("Neutral")) == 4 and " neutral" in label_variants("Neutral")
    assert len(label_variants("mIxed")) == 6
    assert len(label_variants("A")) == 4


def test_prefix_and_text_tokenise_as_the_whole_prompt(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    """The cached prefix's tokens begin every prompt's tokens (the embedded ChatML template)."""
    engine = local_backend.engine
    scorer = local_backend.exact_scorer()
    for book in (likert, Codebook.from_yaml(EXAMPLES / "sentiment.yaml")):
        var = book.variables[0]
        prefix = prefix_messages(book, var)
        for text in [*TEXTS, "<|im_end|> sneaky", "\n\nnewlines\n", "émoji 🙂 ok"]:
            messages = build_messages(book, text, var)
            prefix_text = scorer.prefix_text(prefix)
            whole = engine.render(messages)
            assert whole.startswith(prefix_text)
            rest = whole[len(prefix_text) :]
            assert engine.tokenize(prefix_text) + engine.tokenize(rest, bos=False) == (
                engine.tokenize(whole)
            )
            cached, full = scorer.split(messages, len(prefix))
            assert full[: len(cached)] == cached and 0 < len(cached) < len(full)


def test_five_point_scale_equals_brute_force(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(likert, backend=local_backend, scoring="exact", calibrate="none")
    var = likert.variables[0]
    variants = variants_for(var)
    engine = local_backend.engine
    for text in TEXTS[:2]:
        res = coder.code(text)["stance"]
        assert list(res.probs) == SCALE
        assert math.isclose(sum(res.probs.values()), 1.0, abs_tol=1e-12)
        assert all(p > 0 for p in res.probs.values()) and res.other == 0.0
        prompt = engine.tokenize(engine.render(build_messages(likert, text, var)))
        mass = dict.fromkeys(SCALE, 0.0)
        for label, variant in variants:
            vt = local_backend.exact_scorer().continuation_tokens(variant)
            mass[label] += math.exp(brute_force(local_backend.info.path, prompt, vt))
        total = sum(mass.values())
        for label in SCALE:
            assert res.probs[label] == pytest.approx(mass[label] / total, abs=1e-4)
        assert res.label == max(SCALE, key=lambda k: mass[k]) and res.raw == res.label
        assert res.confidence == max(res.probs.values())
        assert res.entropy == pytest.approx(-sum(p * math.log(p) for p in res.probs.values()))


def test_order_of_texts_does_not_matter(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(likert, backend=local_backend, scoring="exact")
    forward = coder.code_texts(TEXTS, progress=False)
    backward = coder.code_texts(TEXTS[::-1], progress=False)[::-1]
    one_by_one = [coder.code(t) for t in (TEXTS[2], TEXTS[0], TEXTS[3], TEXTS[1])]
    one_by_one = [one_by_one[1], one_by_one[3], one_by_one[0], one_by_one[2]]
    for a, b, c in zip(forward, backward, one_by_one, strict=True):
        assert a.probs == pytest.approx(b.probs, abs=1e-6)
        assert a.probs == pytest.approx(c.probs, abs=1e-6)
        assert a.label == b.label == c.label


def test_many_categories_score_like_one_at_a_time(local_backend) -> None:  # type: ignore[no-untyped-def]
    """Sixty-four variants scored together equal each one scored alone."""
    labels = [f"topic {chr(97 + i)}" for i in range(16)]  # 4 variants each: 64 sequences
    book = Codebook.from_dict({"instructions": "Pick the topic.", "categories": labels})
    messages = build_messages(book, "A text about topic c.", book.variables[0])
    conts = [v for _, v in variants_for(book.variables[0])]
    together = local_backend.score_continuations_sync(messages, conts, len(messages) - 1)
    alone = [
        local_backend.score_continuations_sync(messages, [c], len(messages) - 1) for c in conts[:6]
    ]
    assert np.allclose(together.logprobs[:6], [a.logprobs[0] for a in alone], atol=1e-6)
    assert together.cached_tokens > 0 and together.prompt_tokens == alone[0].prompt_tokens


def test_template_head_is_cached_and_changes_nothing(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    """The user turn's opening and the template's text before {text} join the cached prefix;
    scores equal those with only the system message cached, and the brute force's. Where the
    text's first characters merge with the head's last token, only the system part is cached."""
    scorer = local_backend.exact_scorer()
    spaced = likert.model_copy(update={"template": "Text {text}"})  # " hello" is one token
    cases = [(likert, t, True) for t in (TEXTS[0], "'quoted' text", "'''triple")]
    cases += [(spaced, "hello there", False), (spaced, "\nhello", True)]
    for book, text, head_cached in cases:
        var = book.variables[0]
        head = book.template.split("{text}", 1)[0]
        conts = [v for _, v in variants_for(var)]
        messages = build_messages(book, text, var)
        n = len(messages) - 1
        before = scorer.stats.without_head
        with_head = local_backend.score_continuations_sync(messages, conts, n, head)
        plain = local_backend.score_continuations_sync(messages, conts, n)
        system, full = scorer.split(messages, n)
        if head_cached:
            head_tokens = local_backend.engine.tokenize(scorer.head_text(messages, head))
            assert full[: len(head_tokens)] == head_tokens
            assert with_head.cached_tokens == len(head_tokens) > len(system) + 2
        else:
            assert scorer.stats.without_head == before + 1
            assert with_head.cached_tokens == len(system)
        assert plain.cached_tokens == len(system)
        assert np.allclose(with_head.logprobs, plain.logprobs, atol=1e-4)
        vt = scorer.continuation_tokens(conts[0])
        assert with_head.logprobs[0] == pytest.approx(
            brute_force(local_backend.info.path, full, vt), abs=1e-4
        )


def test_each_variables_prefix_is_evaluated_once(local_backend) -> None:  # type: ignore[no-untyped-def]
    """A codebook with two variables keeps both prefixes cached: coding more texts evaluates
    no prefix again."""
    book = Codebook.from_dict(
        {
            "instructions": f"Code the two variables (prefix test {id(local_backend)}).",
            "variables": [
                {"name": "stance", "categories": SCALE[:3]},
                {"name": "topic", "categories": ["tax", "transport", "schools"]},
            ],
        }
    )
    coder = Coder(book, backend=local_backend, scoring="exact")
    before = local_backend.describe()["exact"]["prefixes_evaluated"]
    first = coder.code_texts(TEXTS[:3], progress=False)
    assert local_backend.describe()["exact"]["prefixes_evaluated"] == before + 2
    again = coder.code_texts(TEXTS[:3], progress=False)
    assert local_backend.describe()["exact"]["prefixes_evaluated"] == before + 2
    for a, b in zip(first, again, strict=True):
        assert a["stance"].probs == b["stance"].probs and a["topic"].probs == b["topic"].probs


def test_generation_state_survives_exact_scoring(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    """Exact scoring has its own llama.cpp context: the engine's cached generation is intact."""
    messages = [{"role": "user", "content": "Say yes."}]
    params = CompletionParams(max_tokens=4, top_logprobs=3)
    local_backend.complete_sync(messages, params)
    before = local_backend.complete_sync(messages, params)  # from the engine's cache
    Coder(likert, backend=local_backend, scoring="exact").code(TEXTS[0])
    after = local_backend.complete_sync(messages, params)
    assert before.text == after.text
    assert [t.logprob for t in before.tokens] == [t.logprob for t in after.tokens]


def test_exact_is_the_local_default_and_in_the_manifest(local_backend, likert: Codebook) -> None:  # type: ignore[no-untyped-def]
    coder = Coder(likert, backend=local_backend)
    assert coder.scoring == "exact"
    out = coder.code_frame(pd.DataFrame({"text": [*TEXTS[:2], ""]}), progress=False)
    assert (out["stance_outside"] == [0.0, 0.0, 1.0]).all()
    assert (out["stance_raw"].iloc[:2].isin(SCALE)).all()
    manifest = coder.manifest()
    assert manifest["scoring"] == "exact"
    assert manifest["exact"]["prefix_cache"] in {"kv", "partly whole prompt"}
    assert manifest["exact"]["prompts_scored"] >= 2
    assert manifest["requests"] == 2 and manifest["prompt_tokens"] > 0


# Mistral-style: the system message goes into the *last* user turn, so the rendered prefix
# does not begin the rendered prompt; exact scoring must evaluate the whole prompt instead.
SYSTEM_LAST = (
    "{% set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "{% if m['role'] == 'user' %}<|im_start|>user\n"
    "{% if loop.last and system %}{{ system }}\n\n{% endif %}{{ m['content'] }}<|im_end|>\n"
    "{% else %}<|im_start|>assistant\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_fallback_to_the_whole_prompt_is_exact_and_recorded() -> None:
    from llama_cpp import llama_chat_format

    from textcoder.backends.llama import LocalBackend

    likert = Codebook.from_dict(
        {"instructions": "Code agreement.", "categories": SCALE, "variable": "stance"}
    )
    backend = LocalBackend(n_ctx=1024, n_threads=2)
    engine = backend.engine
    engine.chat_template = SYSTEM_LAST
    engine.formatter = llama_chat_format.Jinja2ChatFormatter(
        template=SYSTEM_LAST, eos_token="", bos_token="", add_generation_prompt=True
    )
    coder = Coder(likert, backend=backend, scoring="exact", calibrate="none")
    res = coder.code(TEXTS[0])["stance"]
    info = backend.describe()["exact"]
    assert info["whole_prompt_fallbacks"] == 1 and info["prefix_cache"] == "partly whole prompt"
    var = likert.variables[0]
    prompt = engine.tokenize(engine.render(build_messages(likert, TEXTS[0], var)))
    label, variant = variants_for(var)[0]
    vt = backend.exact_scorer().continuation_tokens(variant)
    lp = brute_force(backend.info.path, prompt, vt)
    assert res.extra["logprob"][label] >= lp  # type: ignore[index]
    scored = backend.score_continuations_sync(
        build_messages(likert, TEXTS[0], var), [variant], len(prefix_messages(likert, var))
    )
    assert scored.cached_tokens == 0
    assert scored.logprobs[0] == pytest.approx(lp, abs=1e-4)


def test_exact_needs_an_engine_that_scores_continuations(likert: Codebook) -> None:
    from .flaky_server import FlakyServer

    with FlakyServer() as server, pytest.raises(UsageError, match=r"exact.*logprobs"):
        Coder(likert, base_url=server.url, api_key="none", scoring="exact")


def test_exact_over_http_equals_local_exact(
    local_backend, likert: Codebook, sentiment_book: Codebook, serve_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """`--scoring exact --base-url <textcoder serve>` (the prompt rendered by /tokenize, the
    labels' logprobs from /v1/completions) gives local exact's probabilities."""
    headlines = Codebook.from_yaml(EXAMPLES / "headlines.yaml")
    for book, texts in ((likert, TEXTS), (sentiment_book, TEXTS[:2]), (headlines, TEXTS[2:])):
        local = Coder(book, backend=local_backend, scoring="exact").code_texts(texts)
        remote = Coder(book, base_url=serve_url, model="smollm2", api_key="none", scoring="exact")
        for a, b in zip(local, remote.code_texts(texts, progress=False), strict=True):
            for var in book.variables:
                assert b[var.name].error is None
                assert b[var.name].probs == pytest.approx(a[var.name].probs, abs=1e-4)
                assert b[var.name].label == a[var.name].label
    data = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    book_file = tmp_path / "likert.yaml"
    book_file.write_text(
        "instructions: Code how much the author agrees that public spending should rise.\n"
        f"variable: stance\ncategories: {SCALE}\n"
        "examples:\n  - text: Spend more on parks!\n    codes: {stance: strongly agree}\n"
    )
    out = tmp_path / "coded.csv"
    args = ["-c", str(book_file), "-o", str(out), "--scoring", "exact", "--calibrate", "none"]
    args += ["--quiet"]
    proc = textcoder("code", str(data), *args, "--base-url", serve_url, "-m", "smollm2")
    assert proc.returncode == 0, proc.stderr
    coded = pd.read_csv(out)
    for i, res in enumerate(
        Coder(likert, backend=local_backend, scoring="exact", calibrate="none").code_texts(TEXTS)
    ):
        for lab in SCALE:
            assert coded.loc[i, prob_column("stance", lab)] == pytest.approx(
                res["stance"].probs[lab], abs=1e-4
            )
