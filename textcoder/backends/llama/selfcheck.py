"""A start-up check that this llama-cpp-python build scores the way exact scoring relies on.

Exact scoring keeps a prompt's shared prefix in a KV cache and evaluates each text and label
after it. Some llama-cpp-python builds (0.3.16, for one) drop or misplace cached positions and
give probabilities off by up to 0.7 without any error: wrong numbers must be refused, not
written. The check scores one prompt's labels after a cached prefix (reused by a second text)
and from scratch, and requires the two to agree.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from importlib import metadata
from typing import Protocol

import numpy as np

from ..._exceptions import ModelError
from ..base import Message
from .engine import LocalEngine, log_softmax
from .exact import ExactScorer

#: largest difference allowed between cached and uncached logprobs (float32 rounding is ~1e-6)
TOLERANCE = 1e-4
_SYSTEM = "Classify the sentiment of the text. Answer with one word: positive, negative, neutral."
_TEXTS = ("Text: I loved the new film, what a ride!", "Text: The bus was late again today.")
#: multi-token labels sharing a first token: the trie's branches and KV removals are exercised
_LABELS = ("positive", "negative", "neutral", "not sure", "not at all")

#: the difference measured, by engine key (the check runs once per key and process)
_checked: dict[str, float] = {}
_lock = threading.Lock()


class EngineCheckError(ModelError):
    """The installed llama-cpp-python gives different scores from a cached prefix."""


class ScoringPaths(Protocol):
    """The two ways of scoring labels after a prompt that must agree."""

    def cached(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        """log P(label | prompt), the prompt's prefix kept in a KV cache (exact scoring)."""
        ...

    def scratch(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        """log P(label | prompt), prompt and label evaluated in one batch on an empty cache."""
        ...


class EnginePaths:
    """`ScoringPaths` on a real engine: `ExactScorer` against a plain decode per label."""

    def __init__(self, scorer: ExactScorer) -> None:
        self.scorer = scorer

    def cached(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        return self.scorer.score(messages, labels, 1).logprobs

    def scratch(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        from llama_cpp._internals import LlamaBatch

        engine = self.scorer.engine
        prompt = engine.tokenize(engine.render(messages))
        with engine.lock:
            ctx = engine.scoring_context()
            try:
                out = []
                for label in labels:
                    tokens = self.scorer.continuation_tokens(label)
                    batch = LlamaBatch(n_tokens=len(prompt) + len(tokens), embd=0, n_seq_max=1)
                    batch.set_batch([*prompt, *tokens[:-1]], n_past=0, logits_all=True)
                    ctx.kv_cache_clear()
                    ctx.decode(batch)
                    total = 0.0
                    for i, tok in enumerate(tokens):
                        ptr = ctx.get_logits_ith(len(prompt) - 1 + i)
                        row = np.ctypeslib.as_array(ptr, shape=(engine.n_vocab,))
                        total += float(log_softmax(row)[tok])
                    out.append(total)
                    batch.close()  # type: ignore[no-untyped-call]
                return out
            finally:
                ctx.close()


def supported_range() -> str:
    """The llama-cpp-python versions textcoder declares (from its installed metadata)."""
    try:
        requires = metadata.requires("textcoder") or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "(see pyproject.toml)"
    for req in requires:
        name = req.split(";")[0].strip()
        if name.lower().startswith("llama-cpp-python"):
            return name[len("llama-cpp-python") :].strip() or "(any)"
    return "(any)"


def installed_version() -> str:
    """The installed llama-cpp-python's version, or "unknown"."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def largest_difference(paths: ScoringPaths) -> float:
    """The largest |cached - scratch| logprob over the check's labels, on a second prompt
    (the first fills the prefix cache, which the second reuses)."""
    first, second = (
        [
            Message(role="system", content=_SYSTEM),
            Message(role="user", content=text),
        ]
        for text in _TEXTS
    )
    paths.cached(first, _LABELS)
    cached = paths.cached(second, _LABELS)
    fresh = paths.scratch(second, _LABELS)
    return max(abs(a - b) for a, b in zip(cached, fresh, strict=True))


def verify_exact(paths: ScoringPaths, key: str = "") -> float:
    """The largest difference between cached and uncached scores; `EngineCheckError` (one
    line: the version, the supported range, what to do) where it exceeds `TOLERANCE`.
    Measured once per `key` and process."""
    with _lock:
        if key and key in _checked:
            return _checked[key]
        diff = largest_difference(paths)
        if diff > TOLERANCE:
            wanted = supported_range()
            raise EngineCheckError(
                f"llama-cpp-python {installed_version()} scores a cached prompt prefix "
                f"differently from the same prompt from scratch (by {diff:.3g} in log "
                f"probability), so exact probabilities would be wrong; textcoder supports "
                f"llama-cpp-python{wanted}: pip install 'llama-cpp-python{wanted}'"
            )
        if key:
            _checked[key] = diff
        return diff


def _key(engine: LocalEngine) -> str:
    return f"{engine.info.path}:{engine.n_ctx}"


def checked_scorer(engine: LocalEngine) -> ExactScorer:
    """An `ExactScorer` on `engine`, after the check has passed for the engine's model file."""
    scorer = ExactScorer(engine)
    verify_exact(EnginePaths(scorer), key=_key(engine))
    return scorer


def measured_difference(engine: LocalEngine) -> float | None:
    """The difference the check measured for `engine` in this process (None: not checked)."""
    return _checked.get(_key(engine))
