"""Exact continuation scores on llama.cpp, with the shared prompt prefix evaluated once.

The scorer has a llama.cpp context of its own on the engine's model (the engine's generation
state is never touched). The prefix (system message and examples, as rendered) is evaluated
once and kept in its KV cache; each prompt's own tokens are evaluated after it, then the
continuations' tokens as a trie, depth first, each branch removed before the next. A text
thus costs its own tokens plus the continuations' tokens, whatever the codebook's length.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._exceptions import BackendError, RequestError
from ..prompt import Message

if TYPE_CHECKING:
    from .local import LocalEngine


def scoring_context(engine: LocalEngine) -> Any:
    """A second llama.cpp context on the engine's model, for scoring only.

    The prefix stays in its KV cache between texts; the engine's own context (generation,
    llama-cpp-python's bookkeeping of it) is never touched.
    """
    from llama_cpp import _internals

    from .local import _quiet

    llm = engine.llm
    params = type(llm.context_params).from_buffer_copy(llm.context_params)
    # the engine's thread count for batches too: llama-cpp-python's default for batches is
    # every core, and on a busy machine a spinning extra thread costs 10x on prompt decodes
    params.n_threads_batch = params.n_threads
    try:
        with _quiet():
            return _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise BackendError(f"llama.cpp: cannot create a scoring context: {exc}") from None


@dataclass
class ExactStats:
    """What exact scoring did in this engine, for the run manifest."""

    prompts: int = 0
    whole_prompt: int = 0
    prefixes_evaluated: int = 0
    tokens_evaluated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix_cache": "kv" if self.whole_prompt == 0 else "partly whole prompt",
            "prompts_scored": self.prompts,
            "whole_prompt_fallbacks": self.whole_prompt,
            "prefixes_evaluated": self.prefixes_evaluated,
            "tokens_evaluated": self.tokens_evaluated,
        }


@dataclass(frozen=True)
class ContinuationScores:
    """Log-probabilities of continuations after one prompt, and what evaluating it took."""

    logprobs: tuple[float, ...]
    prompt_tokens: int
    cached_tokens: int


@dataclass
class _Node:
    """One token of the continuation trie: its position below the prompt and its sequences."""

    token: int
    depth: int
    children: dict[int, _Node] = field(default_factory=dict)


def _free(batch: Any, ctx: Any) -> None:
    """Release a scorer's llama.cpp batch and context."""
    import llama_cpp

    llama_cpp.llama_batch_free(batch)
    ctx.close()


class ExactScorer:
    """Scores continuations of chat prompts on one `LocalEngine`, keeping prefixes cached."""

    def __init__(self, engine: LocalEngine) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self.engine = engine
        with engine.lock:
            self.ctx = scoring_context(engine)
        self.n_batch = int(engine.llm.n_batch)
        self._prefix_formatter = llama_chat_format.Jinja2ChatFormatter(
            template=engine.chat_template,
            eos_token=engine._token_text(engine.llm.token_eos()),
            bos_token=engine._token_text(engine.llm.token_bos()),
            add_generation_prompt=False,
        )
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        # free the batch and context before interpreter shutdown tears llama_cpp down
        weakref.finalize(self, _free, self._batch, self.ctx)
        self._prefix_tokens: dict[str, list[int]] = {}
        self._cached_prefix: tuple[int, ...] = ()
        self.stats = ExactStats()

    # -- tokens --------------------------------------------------------------------------

    def split(self, messages: Sequence[Message], n_prefix: int) -> tuple[list[int], list[int]]:
        """The prefix's tokens (messages[:n_prefix], rendered) and the whole prompt's tokens."""
        engine = self.engine
        full = engine.tokenize(engine.render(messages))
        if n_prefix <= 0:
            return [], full
        text = self.prefix_text(messages[:n_prefix])
        prefix = self._prefix_tokens.get(text)
        if prefix is None:
            prefix = engine.tokenize(text)
            if len(self._prefix_tokens) > 64:
                self._prefix_tokens.clear()
            self._prefix_tokens[text] = prefix
        return prefix, full

    def prefix_text(self, prefix: Sequence[Message]) -> str:
        """The prefix messages as the chat template renders them, with no generation prompt."""
        return str(self._prefix_formatter(messages=cast(Any, list(prefix))).prompt)

    def continuation_tokens(self, text: str) -> list[int]:
        """Tokens of a continuation as they follow the prompt: no BOS, no special tokens."""
        llm = self.engine.llm
        return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- scoring -------------------------------------------------------------------------

    def score(
        self, messages: Sequence[Message], continuations: Sequence[str], n_prefix: int
    ) -> ContinuationScores:
        """log P(continuation | rendered prompt with generation prompt), for each continuation.

        The token sequence scored is tokenize(prompt) followed by tokenize(continuation).
        `messages[:n_prefix]` is the shared prefix kept in the KV cache; where its tokens do
        not begin the prompt's tokens, the whole prompt is evaluated instead.
        """
        if not continuations:
            raise RequestError("nothing to score: no continuations")
        conts = [tuple(self.continuation_tokens(c)) for c in continuations]
        if any(not c for c in conts):
            raise RequestError("a continuation to score is empty")
        with self.engine.lock:
            prefix, full = self.split(messages, n_prefix)
            longest = max(len(c) for c in conts)
            if len(full) + longest >= self.engine.n_ctx:
                raise RequestError(
                    f"the prompt is {len(full)} tokens, the model's context is {self.engine.n_ctx}"
                )
            use_prefix = 0 < len(prefix) < len(full) and full[: len(prefix)] == prefix
            self.stats.prompts += 1
            if not use_prefix and n_prefix > 0:
                self.stats.whole_prompt += 1
            start = self._load_prefix(prefix if use_prefix else [])
            try:
                scores = self._score_trie(full, start, conts)
            finally:
                self.ctx.kv_cache_seq_rm(0, start, -1)
            return ContinuationScores(
                tuple(scores[c] for c in conts), prompt_tokens=len(full), cached_tokens=start
            )

    def _load_prefix(self, prefix: list[int]) -> int:
        """Make sequence 0 hold exactly `prefix` (evaluated only if it is not already there)."""
        if tuple(prefix) == self._cached_prefix:
            return len(prefix)
        self.ctx.kv_cache_seq_rm(0, 0, -1)
        self._cached_prefix = ()
        if prefix:
            self._decode([(tok, pos, False) for pos, tok in enumerate(prefix)])
            self._cached_prefix = tuple(prefix)
            self.stats.prefixes_evaluated += 1
        return len(prefix)

    def _score_trie(
        self, full: list[int], start: int, conts: list[tuple[int, ...]]
    ) -> dict[tuple[int, ...], float]:
        """Evaluate the prompt after the prefix, then walk the continuations' trie depth first.

        One sequence, cells always contiguous: a branch's tokens are removed from the cache
        before its sibling is evaluated. (Several llama.cpp sequences in one batch would be
        fewer calls, but this llama.cpp build's CPU attention gives wrong logits for tokens
        whose cells follow another sequence's cells; see tests/test_exact.py.)
        """
        root = _Node(token=-1, depth=0)
        for cont in dict.fromkeys(conts):
            node = root
            for depth, tok in enumerate(cont, start=1):
                node = node.children.setdefault(tok, _Node(token=tok, depth=depth))
        rows = [(tok, start + j, j == len(full) - start - 1) for j, tok in enumerate(full[start:])]
        logits: dict[int, np.ndarray] = {id(root): self._decode(rows)[len(rows) - 1]}
        self.stats.tokens_evaluated += len(rows)
        base = len(full) - 1

        def visit(node: _Node) -> None:
            for child in node.children.values():
                if not child.children:
                    continue
                pos = base + child.depth
                logits[id(child)] = self._decode([(child.token, pos, True)])[0]
                self.stats.tokens_evaluated += 1
                visit(child)
                self.ctx.kv_cache_seq_rm(0, pos, -1)

        visit(root)
        out: dict[tuple[int, ...], float] = {}
        for cont in conts:
            node, total = root, 0.0
            for tok in cont:
                total += float(logits[id(node)][tok])
                node = node.children[tok]
            out[cont] = total
        return out

    def _decode(self, rows: list[tuple[int, int, bool]]) -> dict[int, np.ndarray]:
        """Decode rows (token, position, want logits) on sequence 0 in chunks; log-softmaxes."""
        import llama_cpp

        batch = self._batch
        n_vocab = self.engine.n_vocab
        out: dict[int, np.ndarray] = {}
        for lo in range(0, len(rows), self.n_batch):
            chunk = rows[lo : lo + self.n_batch]
            batch.n_tokens = len(chunk)
            for i, (tok, pos, want) in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = want
            rc = int(llama_cpp.llama_decode(self.ctx.ctx, batch))
            if rc != 0:
                raise BackendError(f"llama.cpp: llama_decode returned {rc}")
            for i, (_, _, want) in enumerate(chunk):
                if want:
                    ptr = llama_cpp.llama_get_logits_ith(self.ctx.ctx, i)
                    z = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
                    z -= z.max()
                    out[lo + i] = z - np.log(np.exp(z).sum())
        return out

    def clear(self) -> None:
        """Drop the cached prefix."""
        with self.engine.lock:
            self.ctx.kv_cache_seq_rm(0, 0, -1)
            self._cached_prefix = ()


class _NoSlot(Exception):
    """llama_decode found no room in the KV cache (return code 1)."""
