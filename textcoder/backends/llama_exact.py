"""Exact continuation scores on llama.cpp, with the shared prompt prefix evaluated once.

The scorer keeps llama.cpp contexts of its own on the engine's model (the engine's generation
state is never touched), one per prefix, the last few prefixes kept (a codebook with several
variables has one prefix per variable). A prefix is the system message and examples as
rendered, then the opening of the user turn up to where the text begins (the template's head);
it is evaluated once and kept in its context's KV cache. Each prompt's own tokens are then
evaluated after it, in one batch with one chain of the continuations' trie, and the rest of the
trie chain by chain, each chain in one batch and removed before the next. A text thus costs
its own tokens plus the continuations' tokens, whatever the codebook's length.

Every decode has at least two tokens (a lone token is padded with a throwaway one after it):
llama.cpp's single-token kernels round differently from its batched ones (about 1e-3 nats on
the embedded model), and this keeps every score what one batch over prompt and label gives.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._exceptions import BackendError, RequestError
from .base import Message

if TYPE_CHECKING:
    from .local import LocalEngine

#: prefixes (hence llama.cpp contexts) kept at once; the least recently used one goes first
MAX_PREFIXES = 4
#: and no more contexts than fit their KV caches in this many bytes (at least one context)
KV_BUDGET = 2 << 30
#: stands in for the user's text while finding where the user turn's content begins
_SENTINEL = "\x00textcoder-text\x00"


def scoring_context(engine: LocalEngine) -> Any:
    """A llama.cpp context on the engine's model, for scoring only.

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


def kv_bytes(engine: LocalEngine) -> int:
    """The bytes of one context's KV cache (f16 keys and values over the whole context)."""
    import llama_cpp

    model = engine.llm._model.model
    layers = int(llama_cpp.llama_model_n_layer(model))
    heads = max(1, int(llama_cpp.llama_model_n_head(model)))
    kv_heads = int(llama_cpp.llama_model_n_head_kv(model))
    head_dim = int(llama_cpp.llama_model_n_embd(model)) // heads
    return 2 * layers * engine.n_ctx * kv_heads * head_dim * 2


@dataclass
class ExactStats:
    """What exact scoring did in this engine, for the run manifest."""

    prompts: int = 0
    whole_prompt: int = 0
    without_head: int = 0
    prefixes_evaluated: int = 0
    tokens_evaluated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix_cache": "kv" if self.whole_prompt == 0 else "partly whole prompt",
            "prompts_scored": self.prompts,
            "whole_prompt_fallbacks": self.whole_prompt,
            "template_head_not_cached": self.without_head,
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
    """One token of the continuation trie, at `depth` tokens below the prompt."""

    token: int
    depth: int
    children: dict[int, _Node] = field(default_factory=dict)
    #: the longest chain of tokens with children below this one (itself included)
    height: int = 0


def _heights(node: _Node) -> int:
    """Fill in `height` for the subtree; a leaf needs no logits, so its height is 0."""
    below = max((_heights(c) for c in node.children.values()), default=0)
    node.height = below + 1 if node.children else 0
    return node.height


def _chain(node: _Node) -> list[_Node]:
    """From `node` down, the nodes that need logits, always into the tallest child."""
    out = [node]
    while True:
        inner = [c for c in out[-1].children.values() if c.children]
        if not inner:
            return out
        out.append(max(inner, key=lambda c: c.height))


class _Slot:
    """One llama.cpp context whose KV cache holds one prefix (sequence 0, cells 0..n-1)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.ctx = scoring_context(engine)
        #: the tokens in the KV cache now, in order of position
        self.tokens: tuple[int, ...] = ()


def _free(batch: Any, slots: OrderedDict[tuple[int, ...], _Slot]) -> None:
    """Release a scorer's llama.cpp batch and contexts."""
    import llama_cpp

    llama_cpp.llama_batch_free(batch)
    for slot in slots.values():
        slot.ctx.close()
    slots.clear()


class ExactScorer:
    """Scores continuations of chat prompts on one `LocalEngine`, keeping prefixes cached."""

    def __init__(self, engine: LocalEngine, max_prefixes: int = MAX_PREFIXES) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self.engine = engine
        self.max_prefixes = max(1, min(max_prefixes, KV_BUDGET // max(1, kv_bytes(engine))))
        self.n_batch = int(engine.llm.n_batch)
        self._prefix_formatter = llama_chat_format.Jinja2ChatFormatter(
            template=engine.chat_template,
            eos_token=engine._token_text(engine.llm.token_eos()),
            bos_token=engine._token_text(engine.llm.token_bos()),
            add_generation_prompt=False,
        )
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        #: contexts by the system part of their prefix, least recently used first
        self._slots: OrderedDict[tuple[int, ...], _Slot] = OrderedDict()
        with engine.lock:
            self._slots[()] = _Slot(engine)  # a context made now fails now, not mid-run
        # free the batch and contexts before interpreter shutdown tears llama_cpp down
        weakref.finalize(self, _free, self._batch, self._slots)
        self._tokens: dict[str, list[int]] = {}
        self._ctx: Any = None
        self.stats = ExactStats()

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

    def _slot(self, system: tuple[int, ...]) -> _Slot:
        """The context kept for this system prefix (made, or the oldest one's reused)."""
        slot = self._slots.get(system)
        if slot is None:
            if len(self._slots) < self.max_prefixes:
                slot = _Slot(self.engine)
            else:
                _, slot = self._slots.popitem(last=False)
                self._ctx = slot.ctx
                self._rm(0)
                slot.tokens = ()
            self._slots[system] = slot
        self._slots.move_to_end(system)
        self._ctx = slot.ctx
        return slot

    def _load(self, slot: _Slot, system: list[int], extra: list[int]) -> int:
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
        """Evaluate the prompt after the cached prefix with the trie's tallest chain, then
        every other chain of the continuations' trie, each in one batch.

        One sequence, cells always contiguous: a chain's cells are removed before a sibling
        chain is evaluated. (Several llama.cpp sequences in one batch would be fewer calls, but
        this llama.cpp build's CPU attention gives wrong logits for tokens whose cells follow
        another sequence's cells; see tests/test_exact.py.)
        """
        root = _Node(token=-1, depth=0)
        for cont in dict.fromkeys(conts):
            node = root
            for depth, tok in enumerate(cont, start=1):
                node = node.children.setdefault(tok, _Node(token=tok, depth=depth))
        _heights(root)
        base = len(full) - 1  # the root's position: the prompt's last token
        logits: dict[int, np.ndarray] = {}
        chain = _chain(root)[1:]
        rows = [(tok, start + j, j == len(full) - start - 1) for j, tok in enumerate(full[start:])]
        rows += [(n.token, base + n.depth, True) for n in chain]
        out = self._decode(rows)
        logits[id(root)] = out[len(full) - start - 1]
        for i, n in enumerate(chain):
            logits[id(n)] = out[len(full) - start + i]
        self.stats.tokens_evaluated += len(rows)

        def expand(path: list[_Node]) -> None:
            """Evaluate every chain hanging off `path` (whose logits are known)."""
            for at, node in reversed(list(enumerate(path))):
                nxt = path[at + 1] if at + 1 < len(path) else None
                for child in node.children.values():
                    if not child.children or child is nxt:
                        continue
                    self._rm(base + node.depth + 1)
                    sub = _chain(child)
                    rows = [(n.token, base + n.depth, True) for n in sub]
                    if len(rows) == 1:  # never a lone token: see the module's docstring
                        rows.append((sub[0].token, base + sub[0].depth + 1, False))
                    got = self._decode(rows)
                    for i, n in enumerate(sub):
                        logits[id(n)] = got[i]
                    self.stats.tokens_evaluated += len(rows)
                    expand(sub)

        expand([root, *chain])
        scores: dict[tuple[int, ...], float] = {}
        for cont in conts:
            node, total = root, 0.0
            for tok in cont:
                total += float(logits[id(node)][tok])
                node = node.children[tok]
            scores[cont] = total
        return scores

    def _rm(self, pos: int) -> None:
        """Drop the current context's cells from `pos` on."""
        self._ctx.kv_cache_seq_rm(0, pos, -1)

    def _decode(self, rows: list[tuple[int, int, bool]]) -> dict[int, np.ndarray]:
        """Decode rows (token, position, want logits) on sequence 0 of the current context,
        in chunks; the wanted rows' log-softmaxes by row index."""
        import llama_cpp

        batch = self._batch
        ctx = self._ctx.ctx
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
            rc = int(llama_cpp.llama_decode(ctx, batch))
            if rc != 0:
                raise BackendError(f"llama.cpp: llama_decode returned {rc}")
            for i, (_, _, want) in enumerate(chunk):
                if want:
                    ptr = llama_cpp.llama_get_logits_ith(ctx, i)
                    z = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
                    z -= z.max()
                    out[lo + i] = z - np.log(np.exp(z).sum())
        return out

    def clear(self) -> None:
        """Drop every cached prefix."""
        with self.engine.lock:
            for slot in self._slots.values():
                slot.ctx.kv_cache_seq_rm(0, 0, -1)
                slot.tokens = ()
