"""`examples_from:`: examples chosen per text, never the text itself, in the store key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook
from textcoder._exceptions import CodebookError, DataError
from textcoder.backends import CompletionParams
from textcoder.backends.base import ContinuationRequest
from textcoder.examples_select import ExampleSelector, load_pool, make_selector
from textcoder.plan import Planner
from textcoder.runner import Runner

from .conftest import textcoder

POOL = [
    ("a1", "I love this phone, the camera is great", "positive"),
    ("a2", "What a lovely sunny day at the beach", "positive"),
    ("a3", "The camera on this phone is terrible", "negative"),
    ("a4", "I hate waiting for the bus in the rain", "negative"),
    ("a5", "The bus leaves at nine from the station", "neutral"),
    ("a6", "The phone has a camera and a screen", "neutral"),
    ("a7", "Great game last night, loved every minute", "positive"),
]


def book_with(tmp_path: Path, **spec: object) -> Codebook:
    """The sentiment codebook with `examples_from:` over POOL written beside it."""
    pd.DataFrame(POOL, columns=["id", "text", "sentiment"]).to_csv(
        tmp_path / "pool.csv", index=False
    )
    text = (
        "instructions: Classify the sentiment.\n"
        "variables:\n  - name: sentiment\n    categories: [positive, negative, neutral]\n"
        f"examples_from: {json.dumps({'file': 'pool.csv', **spec})}\n"
    )
    (tmp_path / "book.yaml").write_text(text)
    return Codebook.from_yaml(tmp_path / "book.yaml")


def texts(examples: object) -> list[str]:
    return [e.text for e in examples]  # type: ignore[attr-defined]


def test_codebook_parses_examples_from(tmp_path: Path) -> None:
    book = book_with(tmp_path, k=3, select="random", balanced=True)
    spec = book.examples_from
    assert spec is not None and (spec.k, spec.select, spec.balanced) == (3, "random", True)
    assert spec.path(book.path) == tmp_path / "pool.csv"
    bad = "instructions: x\ncategories: [a, b]\nexamples_from:\n  file: p.csv\n  pick: 3\n"
    with pytest.raises(CodebookError, match=r"<codebook>:5: examples_from.pick: is not"):
        Codebook.from_yaml_text(bad)


def test_similar_is_deterministic_and_ranks_by_similarity(tmp_path: Path) -> None:
    book = book_with(tmp_path, k=2, select="similar")
    first = make_selector(book)
    second = make_selector(book)
    assert first is not None and second is not None
    query = "my phone camera broke"
    chosen = texts(first.choose(query))
    assert chosen == texts(second.choose(query)) == texts(first.choose(query))
    assert first.embedding == "tf-idf"
    # most similar last, right before the text
    assert set(chosen) <= {POOL[0][1], POOL[2][1], POOL[5][1]}
    assert len(chosen) == 2


def test_a_text_never_gets_itself(tmp_path: Path) -> None:
    book = book_with(tmp_path, k=6, select="similar")
    sel = make_selector(book)
    assert sel is not None
    same_text = texts(sel.choose(POOL[0][1]))
    assert POOL[0][1] not in same_text and len(same_text) == 6
    by_id = texts(sel.choose("a different text about a phone camera", row_id="a3"))
    assert POOL[2][1] not in by_id
    for select in ("random", "fixed"):
        other = make_selector(book_with(tmp_path, k=6, select=select))
        assert other is not None
        assert POOL[3][1] not in texts(other.choose(POOL[3][1]))
        assert POOL[4][1] not in texts(other.choose("x", row_id="a5"))


def test_random_per_text_fixed_for_all(tmp_path: Path) -> None:
    rnd = make_selector(book_with(tmp_path, k=3, select="random", seed=1))
    fixed = make_selector(book_with(tmp_path, k=3, select="fixed", seed=1))
    assert rnd is not None and fixed is not None
    assert texts(rnd.choose("one text")) == texts(rnd.choose("one text"))
    draws = {tuple(texts(rnd.choose(f"text {i}"))) for i in range(10)}
    assert len(draws) > 1
    assert len({tuple(texts(fixed.choose(f"text {i}"))) for i in range(10)}) == 1


def test_balanced_spreads_over_categories(tmp_path: Path) -> None:
    sel = make_selector(book_with(tmp_path, k=3, select="similar", balanced=True))
    assert sel is not None
    codes = [e.codes["sentiment"] for e in sel.choose("phone camera")]
    assert sorted(codes) == ["negative", "neutral", "positive"]


def test_pool_errors_name_file_row_and_column(tmp_path: Path) -> None:
    book = book_with(tmp_path)
    pd.DataFrame(
        [("x", "fine", "positive"), ("y", "meh", "so-so")], columns=["id", "text", "sentiment"]
    ).to_csv(tmp_path / "pool.csv", index=False)
    with pytest.raises(DataError, match=r"pool.csv: row 3: column 'sentiment': 'so-so' is not"):
        load_pool(book, book.examples_from)  # type: ignore[arg-type]
    (tmp_path / "pool.csv").unlink()
    with pytest.raises(CodebookError, match=r"examples_from\.file: no such file"):
        make_selector(book)


def test_store_key_changes_with_the_examples(tmp_path: Path, local_backend: object) -> None:
    book = book_with(tmp_path, k=2, select="similar")
    sel = make_selector(book)
    assert isinstance(sel, ExampleSelector)

    def planner(choose: object) -> Planner:
        runner = Runner(book, local_backend, "exact", CompletionParams(), examples=choose)  # type: ignore[arg-type]
        return runner.planner

    plain, chosen = planner(None), planner(sel.choose)
    other = planner(lambda text, row_id: sel.pool[-1:])
    text = "my phone camera broke"

    def key(p: Planner, row_id: str | None = None) -> str:
        (unit,) = p.plan(text, row_id)
        return unit.keys[0]

    assert len({key(plain), key(chosen), key(other)}) == 3
    # the examples are in the messages that are sent (and hashed into the key)
    (request,) = chosen.all_requests(text)
    assert [m["content"] for m in request.messages[1:-1:2]] == [
        book.render(t) for t in texts(sel.choose(text))
    ]
    assert chosen.for_text(text).payload(text, book.variables[0])["messages"] == request.messages
    # exact caches the system message only: the examples change from text to text
    assert isinstance(request, ContinuationRequest) and request.n_prefix == 1
    # a row whose id is a chosen example's gets other examples, so another key
    assert POOL[0][1] in texts(sel.choose(text))
    assert key(chosen, "a1") != key(chosen, "zz") == key(chosen)


def test_prompt_shows_the_examples_chosen(tmp_path: Path) -> None:
    book_with(tmp_path, k=2, select="similar")
    args = ["prompt", "-c", str(tmp_path / "book.yaml"), "-t", "my phone camera broke"]
    done = textcoder(*args, "--base-url", "http://127.0.0.1:9/v1")
    assert done.returncode == 0, done.stderr
    messages = json.loads(done.stdout)
    sel = make_selector(Codebook.from_yaml(tmp_path / "book.yaml"))
    assert sel is not None
    shown = [m["content"] for m in messages[1:-1:2]]
    assert shown == [f"Text: '''{t}'''" for t in texts(sel.choose("my phone camera broke"))]
    assert [m["content"] for m in messages[2:-1:2]] == [
        e.codes["sentiment"] for e in sel.choose("my phone camera broke")
    ]


def test_llama_embeddings_rank_deterministically(tmp_path: Path) -> None:
    """`similar` on the local engine: the same GGUF embeds (llama.cpp, embedding=True)."""
    from textcoder.models import resolve_model

    book = book_with(tmp_path, k=3, select="similar")
    sel = make_selector(book, resolve_model(None).path)
    assert sel is not None and sel.embedding is not None and sel.embedding.startswith("llama.cpp")
    first = texts(sel.choose("I love my new phone"))
    again = make_selector(book, resolve_model(None).path)
    assert again is not None
    assert first == texts(again.choose("I love my new phone"))
    assert len(first) == 3 and "I love my new phone" not in first
