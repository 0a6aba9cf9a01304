"""Worked examples chosen for each text from a labelled file (`examples_from:` in the codebook).

`ExampleSelector.choose(text, row_id)` is the one hook the request builder calls: the examples
to show before this text. `similar` ranks the labelled texts by cosine similarity of
embeddings (the local engine's GGUF run with `embedding=True`, or `embed_model:`; TF-IDF from
scikit-learn where no engine embeds), `random` draws k per text (seeded by the text, so
`textcoder prompt` shows what a run sends), `fixed` draws k once. A text never gets itself
(same id, or the same text) as an example. The chosen examples go into the request's
messages, so they are part of its store key.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._exceptions import CodebookError, DataError
from .codebook import Codebook, Example, ExamplesFrom

Vectors = npt.NDArray[np.float64]
Embed = Callable[[Sequence[str]], Vectors]
#: the labelled texts' vectors, by (embedding, texts), shared by the selectors of a process
_POOL_VECTORS: dict[tuple[str, int], Vectors] = {}
#: how many texts' choices are remembered (each request's key and messages ask twice)
_MEMO = 4096


def load_pool(book: Codebook, spec: ExamplesFrom) -> tuple[list[Example], list[str | None]]:
    """The labelled file's rows as examples (codes for every variable it has a column for),
    with their ids; one clear line naming the file, row and column for a bad code."""
    from .tables import read_table

    path = spec.path(book.path)
    if not path.is_file():
        raise CodebookError(f"{book.path}: examples_from.file: no such file {str(path)!r}")
    df = read_table(path)
    if spec.text_column not in df.columns:
        raise DataError(f"{path}: no column {spec.text_column!r} (examples_from.text_column)")
    coded = [v for v in book.variables if v.name in df.columns]
    if not coded:
        names = ", ".join(v.name for v in book.variables)
        raise DataError(f"{path}: no column named after a variable ({names}) to take codes from")
    ids = df[spec.id_column].astype(str).tolist() if spec.id_column in df.columns else None
    examples: list[Example] = []
    row_ids: list[str | None] = []
    for i, row in enumerate(df.to_dict("records")):
        text = row[spec.text_column]
        if not isinstance(text, str) or not text.strip():
            continue
        codes = {v.name: _code(row[v.name], v, path, i) for v in coded if _present(row[v.name])}
        if codes:
            examples.append(Example(text=text, codes=codes))
            row_ids.append(ids[i] if ids is not None else None)
    if not examples:
        raise DataError(f"{path}: no row with a text and a code to use as an example")
    return examples, row_ids


def _present(value: Any) -> bool:
    return not (value is None or (isinstance(value, float) and value != value) or value == "")


def _code(value: Any, variable: Any, path: Path, index: int) -> str:
    """A code as its category's label; a code naming no category fails with file and row."""
    raw = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    parts = [p.strip() for p in raw.split(";") if p.strip()] if variable.multi else [raw]
    labels = []
    for part in parts:
        cat = variable.find(part)
        if cat is None:
            raise DataError(
                f"{path}: row {index + 2}: column {variable.name!r}: {part!r} is not one of "
                f"the categories {variable.labels}"
            )
        labels.append(cat.label)
    return ";".join(labels)


def tfidf_embedder(pool: Sequence[str]) -> Embed:
    """TF-IDF vectors (word 1-2 grams, fitted on the labelled texts), L2-normalised."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit(list(pool))

    def embed(texts: Sequence[str]) -> Vectors:
        return np.asarray(vec.transform(list(texts)).toarray(), dtype=np.float64)

    return embed


@functools.lru_cache(maxsize=2)
def llama_embedder(model_path: str | Path, n_threads: int | None = None) -> Embed:
    """Mean-pooled embeddings from a GGUF run by llama.cpp with `embedding=True` (one model
    per file and process: the variants of a robustness check share it)."""
    import os

    from llama_cpp import LLAMA_POOLING_TYPE_MEAN

    from .backends.llama.engine import quiet
    from .backends.llama.load import load_llama

    threads = n_threads or os.cpu_count() or 1
    with quiet():
        llm = load_llama(
            str(model_path),
            embedding=True,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            n_ctx=512,
            n_batch=512,
            n_ubatch=512,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )

    def embed(texts: Sequence[str]) -> Vectors:
        rows = llm.embed(list(texts), normalize=False, truncate=True)
        return np.asarray(rows, dtype=np.float64).reshape(len(texts), -1)

    # close the model before interpreter shutdown tears llama_cpp down (as LocalEngine does)
    weakref.finalize(embed, llm.close)
    return embed


def _normalise(x: Vectors) -> Vectors:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: Vectors = x / np.where(norms > 0, norms, 1.0)
    return out


def _stable_int(*parts: object) -> int:
    """A seed from its parts that is the same in every process (unlike `hash`)."""
    digest = hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


class ExampleSelector:
    """Chooses `k` labelled examples for each text, as the codebook's `examples_from:` says."""

    def __init__(
        self,
        book: Codebook,
        examples: Sequence[Example],
        ids: Sequence[str | None] | None = None,
        embedder: Callable[[Sequence[str]], Embed] = tfidf_embedder,
        embedding: str = "tf-idf",
    ) -> None:
        if book.examples_from is None:
            raise CodebookError(f"{book.path}: the codebook has no examples_from:")
        self.spec = book.examples_from
        self.book = book
        self.pool = list(examples)
        self.ids = list(ids) if ids is not None else [None] * len(self.pool)
        self._texts = [e.text.strip() for e in self.pool]
        #: the variable `balanced` spreads over: the first one the pool codes
        self.strata = next(v for v in book.variables if any(v.name in e.codes for e in self.pool))
        #: makes the embedding function from the labelled texts (only `similar` calls it)
        self.embedder = embedder
        self._embed: Embed | None = None
        self._vectors: Vectors | None = None
        self._memo: OrderedDict[tuple[str, str | None], tuple[Example, ...]] = OrderedDict()
        #: which embeddings rank `similar` ("llama.cpp: PATH", "tf-idf")
        self.embedding = embedding if self.spec.select == "similar" else None
        self._order = np.random.default_rng(self.spec.seed).permutation(len(self.pool))

    def choose(self, text: str, row_id: str | None = None) -> tuple[Example, ...]:
        """The examples for one text (never the text itself), least similar first."""
        key = (text, row_id)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        allowed = np.array(
            [
                t != text.strip() and (row_id is None or i is None or i != str(row_id))
                for t, i in zip(self._texts, self.ids, strict=True)
            ]
        )
        ranked = self._ranked(text, allowed)
        picked = self._balanced(ranked) if self.spec.balanced else ranked[: self.spec.k]
        if self.spec.select == "similar":
            picked = picked[::-1]  # the most similar example right before the text
        out = tuple(self.pool[i] for i in picked)
        self._memo[key] = out
        if len(self._memo) > _MEMO:
            self._memo.popitem(last=False)
        return out

    def codebook_for(self, text: str, row_id: str | None = None) -> Codebook:
        """The codebook with this text's examples after its own fixed `examples:`."""
        chosen = self.choose(text, row_id)
        return self.book.model_copy(update={"examples": (*self.book.examples, *chosen)})

    def _ranked(self, text: str, allowed: npt.NDArray[np.bool_]) -> list[int]:
        """Allowed pool indices, best first: by similarity, by a per-text draw, or fixed."""
        if self.spec.select == "fixed":
            order = self._order
        elif self.spec.select == "random":
            order = np.random.default_rng(_stable_int(self.spec.seed, text)).permutation(
                len(self.pool)
            )
        else:
            sims = self._similarities(text)
            order = np.lexsort((np.arange(len(sims)), -np.round(sims, 10)))
        return [int(i) for i in order if allowed[i]]

    def _balanced(self, ranked: list[int]) -> list[int]:
        """Round-robin over the categories of `strata`, each category's best first."""
        name = self.strata.name
        queues: dict[str, list[int]] = {lab: [] for lab in self.strata.labels}
        rest: list[int] = []
        for i in ranked:
            code = self.pool[i].codes.get(name, "").split(";")[0]
            queues.get(code, rest).append(i)
        firsts = sorted((q for q in queues.values() if q), key=lambda q: ranked.index(q[0]))
        out: list[int] = []
        while len(out) < self.spec.k and any(firsts):
            for q in firsts:
                if q and len(out) < self.spec.k:
                    out.append(q.pop(0))
        return out + rest[: self.spec.k - len(out)]

    def _similarities(self, text: str) -> npt.NDArray[np.float64]:
        """Cosine similarity of the text to every labelled text."""
        if self._embed is None:
            self._embed = self.embedder(self._texts)
            key = (self.embedding or "", _stable_int(*self._texts))
            if key not in _POOL_VECTORS:
                _POOL_VECTORS[key] = _normalise(self._embed(self._texts))
            self._vectors = _POOL_VECTORS[key]
        assert self._vectors is not None
        q = _normalise(self._embed([text.strip()]))[0]
        sims: npt.NDArray[np.float64] = self._vectors @ q
        return sims

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the examples' selection."""
        return {
            **self.spec.model_dump(mode="json"),
            "pool_size": len(self.pool),
            "embedding": self.embedding,
        }


def make_selector(book: Codebook, model_path: str | Path | None = None) -> ExampleSelector | None:
    """The codebook's selector (None without `examples_from:`). `similar` embeds with
    `embed_model:`, else with the GGUF at `model_path` (the local engine's), else TF-IDF."""
    spec = book.examples_from
    if spec is None:
        return None
    examples, ids = load_pool(book, spec)
    source: str | Path | None = model_path
    if spec.embed_model is not None:
        from .models import resolve_model

        source = resolve_model(spec.embed_model).path
    if source is None or spec.select != "similar":
        return ExampleSelector(book, examples, ids)
    gguf = source
    return ExampleSelector(
        book, examples, ids, lambda _pool: llama_embedder(gguf), f"llama.cpp: {gguf}"
    )
