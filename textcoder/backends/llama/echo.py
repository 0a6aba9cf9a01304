"""Logprobs of the prompt's own tokens (legacy Completions' `echo` with `logprobs`, vLLM's
`prompt_logprobs`), computed as exact scoring computes them.

The prompts of one request are a trie: their longest common prefix is evaluated once, with
a row of logits kept for every position, and what follows it (a text's label variants) chain
by chain, as `ExactScorer` evaluates a text's labels; so a label's logprobs here equal local
`exact`'s. The common prefix stays in the KV cache with each position's result, so the next
request that shares it (the next text of a codebook) evaluates only what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import LOGPROB_FLOOR, LocalEngine
from .trie import KV_BUDGET, MAX_PREFIXES, Slot, TrieDecoder


@dataclass(frozen=True)
class Position:
    """One prompt token: its logprob after the tokens before it, its rank (1 = the most
    likely token), and the k most likely tokens there (id, logprob)."""

    token: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...]


def position(row: np.ndarray, token: int, k: int) -> Position:
    """The record of `token` in the log-softmax `row`, with the top k alternatives."""
    lp = float(row[token])
    top: tuple[tuple[int, float], ...] = ()
    if k > 0:
        idx = np.argpartition(-row, k)[:k]
        idx = idx[np.lexsort((idx, -row[idx]))]
        top = tuple((int(i), max(float(row[i]), LOGPROB_FLOOR)) for i in idx)
    return Position(token, max(lp, LOGPROB_FLOOR), int((row > row[token]).sum()) + 1, top)


@dataclass
class _Cached:
    """One llama.cpp context's KV cache and each of its positions' records."""

    slot: Slot
    records: list[Position | None] = field(default_factory=list)


class PromptScorer(TrieDecoder):
    """Per-position logprobs of token sequences on one engine; the shared prefixes of the
    last few requests (one per codebook variable) stay cached."""

    def __init__(self, engine: LocalEngine) -> None:
        super().__init__(engine, max_prefixes=1)
        self._cache = [_Cached(self._slots[()])]
        self._room = max(1, min(MAX_PREFIXES, KV_BUDGET // max(1, engine.kv_bytes())))
        self._k = -1

    def score_sequences(
        self, seqs: Sequence[Sequence[int]], k: int = 0
    ) -> list[list[Position | None]]:
        """For each sequence, a record per token (None for the first: nothing precedes it)."""
        out: dict[int, list[Position | None]] = {}
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(seqs):
            groups.setdefault(seq[0], []).append(i)
        with self.engine.lock:
            if k != self._k:  # cached records carry the top k they were made with
                for c in self._cache:
                    c.slot.tokens, c.records = (), []
                self._k = k
            for members in groups.values():
                got = self._group([list(seqs[i]) for i in members], k)
                out.update(zip(members, got, strict=True))
        return [out[i] for i in range(len(seqs))]

    def _pick(self, prefix: list[int]) -> tuple[_Cached, int]:
        """The cache sharing the longest start with `prefix` (a new one while there is room,
        else the least recently used), moved to the end; and how much it shares."""
        shared = [_common([list(c.slot.tokens), prefix]) if c.slot.tokens else 0
                  for c in self._cache]  # fmt: skip
        best = max(range(len(shared)), key=lambda i: shared[i])
        if shared[best] < 2 and len(self._cache) < self._room:
            slot = Slot(self.engine)
            self._slots[(len(self._cache),)] = slot  # freed with the others
            self._cache.append(_Cached(slot))
            best, shared = len(self._cache) - 1, [*shared, 0]
        elif shared[best] < 2:
            best = 0
        cached = self._cache.pop(best)
        self._cache.append(cached)
        self._ctx = cached.slot.ctx
        return cached, shared[best]

    def _group(self, seqs: list[list[int]], k: int) -> list[list[Position | None]]:
        """Sequences that share at least their first token."""
        prefix = seqs[0][: _common(seqs)]
        cache, shared = self._pick(prefix)
        start = max(shared - 1, 0)  # the last cached position is evaluated again: its row
        self._rm(start)
        records: list[Position | None] = [None, *cache.records[1 : start + 1]]
        cache.slot.tokens, cache.records = tuple(prefix[:start]), records[: start + 1]
        conts = [tuple(s[len(prefix) :]) for s in seqs]

        def reduce(j: int, row: np.ndarray) -> Position:
            return position(row, prefix[start + j + 1], k)

        try:
            root, logits, rows = self._trie_logits(prefix, start, [c for c in conts if c], reduce)
        finally:
            self._rm(len(prefix))
        records += [rows[j] for j in range(len(prefix) - 1 - start)]
        cache.slot.tokens, cache.records = tuple(prefix), records
        self.stats.prompts += len(seqs)
        return [records + _follow(root, logits, c, k) for c in conts]


def _follow(root: Any, logits: dict[int, np.ndarray], cont: Sequence[int], k: int) -> list[Any]:
    out: list[Any] = []
    node = root
    for tok in cont:
        out.append(position(logits[id(node)], tok, k))
        node = node.children[tok]
    return out


def _common(seqs: Sequence[Sequence[int]]) -> int:
    """The length of the longest prefix that all `seqs` share."""
    first = seqs[0]
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n
