"""Exact continuation scores on llama.cpp, with the shared prompt prefix evaluated once.

The scorer keeps llama.cpp contexts of its own on the engine's model (the engine's generation
state is never touched), one per prefix, the last few prefixes kept (a codebook with several
variables has one prefix per variable). A prefix is the system message and examples as
rendered, then the opening of the user turn up to where the text begins (the template's head);
it is evaluated once and kept in its context's KV cache. Each prompt's own tokens are then
evaluated after it, in one batch with one chain of the continuations' trie, and the rest of the
trie chain by chain, each chain in one batch and removed before the next. A text thus costs
its own tokens plus the continuations' tokens, whatever the codebook's length.
The decoding itself (the trie, at least two tokens a decode) is `trie.TrieDecoder`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..._exceptions import RequestError
from ..base import Message
from .engine import LocalEngine
from .trie import MAX_PREFIXES, ExactStats, Slot, TrieDecoder

__all__ = ["ContinuationScores", "ExactScorer", "ExactStats"]
#: stands in for the user's text while finding where the user turn's content begins
_SENTINEL = "\x00textcoder-text\x00"


@dataclass(frozen=True)
class ContinuationScores:
    """Log-probabilities of continuations after one prompt, and what evaluating it took."""

    logprobs: tuple[float, ...]
    prompt_tokens: int
    cached_tokens: int


class ExactScorer(TrieDecoder):
    """Scores continuations of chat prompts on one `LocalEngine`, keeping prefixes cached."""

    def __init__(self, engine: LocalEngine, max_prefixes: int = MAX_PREFIXES) -> None:
        super().__init__(engine, max_prefixes)
        self._prefix_formatter = engine.chat_formatter(add_generation_prompt=False)
        self._tokens: dict[str, list[int]] = {}

    # -- tokens --------------------------------------------------------------------------

    def _tokenize_cached(self, text: str) -> list[int]:
        tokens = self._tokens.get(text)
        if tokens is None:
            tokens = self.engine.tokenize(text)
            if len(self._tokens) > 256:
                self._tokens.clear()
            self._tokens[text] = tokens
        return tokens

    def split(self, messages: Sequence[Message], n_prefix: int) -> tuple[list[int], list[int]]:
        """The prefix's tokens (messages[:n_prefix], rendered) and the whole prompt's tokens."""
        full = self.engine.tokenize(self.engine.render(messages))
        if n_prefix <= 0:
            return [], full
        return self._tokenize_cached(self.prefix_text(messages[:n_prefix])), full

    def prefix_text(self, prefix: Sequence[Message]) -> str:
        """The prefix messages as the chat template renders them, with no generation prompt."""
        return str(self._prefix_formatter(messages=cast(Any, list(prefix))).prompt)

    def head_text(self, messages: Sequence[Message], head: str) -> str | None:
        """The rendered prompt up to where the last message's text begins: the prefix, the
        user turn's opening and the template's `head`; None where the template hides it."""
        if not head or not messages or not str(messages[-1]["content"]).startswith(head):
            return None
        probe = [*messages[:-1], {**messages[-1], "content": head + _SENTINEL}]
        rendered = str(self._prefix_formatter(messages=cast(Any, probe)).prompt)
        at = rendered.find(head + _SENTINEL)
        return rendered[: at + len(head)] if at >= 0 else None

    def continuation_tokens(self, text: str) -> list[int]:
        """Tokens of a continuation as they follow the prompt: no BOS, no special tokens."""
        llm = self.engine.llm
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- scoring -------------------------------------------------------------------------

    def score(
        self,
        messages: Sequence[Message],
        continuations: Sequence[str],
        n_prefix: int,
        head: str = "",
    ) -> ContinuationScores:
        """log P(continuation | rendered prompt with generation prompt), for each continuation.

        The token sequence scored is tokenize(prompt) followed by tokenize(continuation).
        `messages[:n_prefix]` is the shared prefix kept in the KV cache, and with it the last
        message's opening `head` (the template's text before `{text}`). Where the prefix's
        tokens do not begin the prompt's tokens, less is cached: the prefix without the head,
        else nothing (the whole prompt is evaluated).
        """
        if not continuations:
            raise RequestError("nothing to score: no continuations")
        conts = [tuple(self.continuation_tokens(c)) for c in continuations]
        if any(not c for c in conts):
            raise RequestError("a continuation to score is empty")
        with self.engine.lock:
            system, full = self.split(messages, n_prefix)
            longest = max(len(c) for c in conts)
            if len(full) + longest >= self.engine.n_ctx:
                raise RequestError(
                    f"the prompt is {len(full)} tokens, the model's context is {self.engine.n_ctx}"
                )
            self.stats.prompts += 1
            if not (0 < len(system) < len(full) and full[: len(system)] == system):
                if n_prefix > 0:
                    self.stats.whole_prompt += 1
                system = []
            extra: list[int] = []
            text = self.head_text(messages, head) if system else None
            if text is not None:
                with_head = self._tokenize_cached(text)
                if len(with_head) < len(full) and full[: len(with_head)] == with_head:
                    extra = with_head[len(system) :]
                else:
                    self.stats.without_head += 1
            slot = self._slot(tuple(system))
            start = self._load(slot, system, extra)
            try:
                scores = self._score_trie(full, start, conts)
            finally:
                self._rm(start)  # the slot keeps its prefix, `start` tokens
            return ContinuationScores(
                tuple(scores[c] for c in conts), prompt_tokens=len(full), cached_tokens=start
            )

    def _slot(self, system: tuple[int, ...]) -> Slot:
        """The context kept for this system prefix (made, or the oldest one's reused)."""
        slot = self._slots.get(system)
        if slot is None:
            if len(self._slots) < self.max_prefixes:
                slot = Slot(self.engine)
            else:
                _, slot = self._slots.popitem(last=False)
                self._ctx = slot.ctx
                self._rm(0)
                slot.tokens = ()
            self._slots[system] = slot
        self._slots.move_to_end(system)
        self._ctx = slot.ctx
        return slot

    def _load(self, slot: Slot, system: list[int], extra: list[int]) -> int:
        """Make the slot's KV cache hold `system + extra`, evaluating only what it lacks.

        The system part is always evaluated in the same chunks from position 0, and the head
        (`extra`) in one batch after it, so the cache's contents never depend on history.
        """
        if slot.tokens[: len(system)] != tuple(system):
            self._rm(0)
            slot.tokens = ()
            if system:
                self._decode([(tok, pos, False) for pos, tok in enumerate(system)])
                self.stats.prefixes_evaluated += 1
            slot.tokens = tuple(system)
        want = tuple(system) + tuple(extra)
        if slot.tokens != want:
            self._rm(len(system))
            slot.tokens = tuple(system)
            if extra:
                self._decode([(tok, len(system) + i, False) for i, tok in enumerate(extra)])
            slot.tokens = want
        return len(want)

    def _score_trie(
        self, full: list[int], start: int, conts: list[tuple[int, ...]]
    ) -> dict[tuple[int, ...], float]:
        """log P(continuation | full) for each continuation (see `_trie_logits`)."""
        root, logits, _ = self._trie_logits(full, start, conts)
        scores: dict[tuple[int, ...], float] = {}
        for cont in conts:
            node, total = root, 0.0
            for tok in cont:
                total += float(logits[id(node)][tok])
                node = node.children[tok]
            scores[cont] = total
        return scores

    def clear(self) -> None:
        """Drop every cached prefix."""
        with self.engine.lock:
            for slot in self._slots.values():
                slot.ctx.kv_cache_seq_rm(0, 0, -1)
                slot.tokens = ()
