"""The trie decoder under exact scoring and prompt logprobs: token sequences that share a
prompt, evaluated on llama.cpp contexts of their own (the engine's generation state is never
touched), the prompt once and what follows it chain by chain.

Every decode has at least two tokens (a lone token is padded with a throwaway one after it):
llama.cpp's single-token kernels round differently from its batched ones (about 1e-3 nats on
the embedded model), and this keeps every score what one batch over prompt and label gives.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..._exceptions import BackendError
from .engine import LocalEngine, log_softmax

#: prefixes (hence llama.cpp contexts) kept at once; the least recently used one goes first
MAX_PREFIXES = 4
#: and no more contexts than fit their KV caches in this many bytes (at least one context)
KV_BUDGET = 2 << 30


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


@dataclass
class Node:
    """One token of the continuation trie, at `depth` tokens below the prompt."""

    token: int
    depth: int
    children: dict[int, Node] = field(default_factory=dict)
    #: the longest chain of tokens with children below this one (itself included)
    height: int = 0


def heights(node: Node) -> int:
    """Fill in `height` for the subtree; a leaf needs no logits, so its height is 0."""
    below = max((heights(c) for c in node.children.values()), default=0)
    node.height = below + 1 if node.children else 0
    return node.height


def chain(node: Node) -> list[Node]:
    """From `node` down, the nodes that need logits, always into the tallest child."""
    out = [node]
    while True:
        inner = [c for c in out[-1].children.values() if c.children]
        if not inner:
            return out
        out.append(max(inner, key=lambda c: c.height))


class Slot:
    """One llama.cpp context whose KV cache holds one prefix (sequence 0, cells 0..n-1)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.ctx = engine.scoring_context()
        #: the tokens in the KV cache now, in order of position
        self.tokens: tuple[int, ...] = ()


def _free(batch: Any, slots: OrderedDict[Any, Slot]) -> None:
    """Release a scorer's llama.cpp batch and contexts."""
    import llama_cpp

    llama_cpp.llama_batch_free(batch)
    for slot in slots.values():
        slot.ctx.close()
    slots.clear()


class TrieDecoder:
    """llama.cpp contexts (slots, one cached prefix each) and the batch that decodes on them."""

    def __init__(self, engine: LocalEngine, max_prefixes: int = MAX_PREFIXES) -> None:
        import llama_cpp

        self.engine = engine
        self.max_prefixes = max(1, min(max_prefixes, KV_BUDGET // max(1, engine.kv_bytes())))
        self.n_batch = int(engine.llm.n_batch)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        #: contexts by the prefix they are kept for, least recently used first
        self._slots: OrderedDict[tuple[int, ...], Slot] = OrderedDict()
        with engine.lock:
            self._slots[()] = Slot(engine)  # a context made now fails now, not mid-run
        # free the batch and contexts before interpreter shutdown tears llama_cpp down
        weakref.finalize(self, _free, self._batch, self._slots)
        self._ctx: Any = None
        self.stats = ExactStats()

    def _trie_logits(
        self,
        full: list[int],
        start: int,
        conts: Sequence[tuple[int, ...]],
        prompt_reduce: Callable[[int, np.ndarray], Any] | None = None,
    ) -> tuple[Node, dict[int, np.ndarray], dict[int, Any]]:
        """Evaluate the prompt after the cached prefix with the trie's tallest chain, then
        every other chain of the continuations' trie, each in one batch: the trie's root and
        the log-softmax after each of its inner nodes (by node id). With `prompt_reduce`,
        every prompt position from `start` is kept too, as `prompt_reduce(j, row)` for
        position start + j (all but the last: that is the root).

        One sequence, cells always contiguous: a chain's cells are removed before a sibling
        chain is evaluated. (Several llama.cpp sequences in one batch would be fewer calls, but
        this llama.cpp build's CPU attention gives wrong logits for tokens whose cells follow
        another sequence's cells; see tests/test_exact.py.)
        """
        root = Node(token=-1, depth=0)
        for cont in dict.fromkeys(conts):
            node = root
            for depth, tok in enumerate(cont, start=1):
                node = node.children.setdefault(tok, Node(token=tok, depth=depth))
        heights(root)
        base = len(full) - 1  # the root's position: the prompt's last token
        n_prompt = len(full) - start
        lead = chain(root)[1:]
        rows = [(tok, start + j, prompt_reduce is not None or j == n_prompt - 1)
                for j, tok in enumerate(full[start:])]  # fmt: skip
        rows += [(n.token, base + n.depth, True) for n in lead]
        if len(rows) == 1:  # never a lone token: see the module's docstring
            rows.append((full[-1], base + 1, False))

        def keep(i: int, row: np.ndarray) -> Any:
            return prompt_reduce(i, row) if prompt_reduce and i < n_prompt - 1 else row

        out = self._decode(rows, keep)
        logits: dict[int, np.ndarray] = {id(root): out[n_prompt - 1]}
        for i, n in enumerate(lead):
            logits[id(n)] = out[n_prompt + i]
        self.stats.tokens_evaluated += len(rows)
        self._expand([root, *lead], base, logits)
        prompt_rows = {i: out[i] for i in range(n_prompt - 1)} if prompt_reduce else {}
        return root, logits, prompt_rows

    def _expand(self, path: list[Node], base: int, logits: dict[int, np.ndarray]) -> None:
        """Evaluate every chain hanging off `path` (whose logits are known)."""
        for at, node in reversed(list(enumerate(path))):
            nxt = path[at + 1] if at + 1 < len(path) else None
            for child in node.children.values():
                if not child.children or child is nxt:
                    continue
                self._rm(base + node.depth + 1)
                sub = chain(child)
                rows = [(n.token, base + n.depth, True) for n in sub]
                if len(rows) == 1:  # never a lone token: see the module's docstring
                    rows.append((sub[0].token, base + sub[0].depth + 1, False))
                got = self._decode(rows)
                for i, n in enumerate(sub):
                    logits[id(n)] = got[i]
                self.stats.tokens_evaluated += len(rows)
                self._expand(sub, base, logits)

    def _rm(self, pos: int) -> None:
        """Drop the current context's cells from `pos` on."""
        self._ctx.kv_cache_seq_rm(0, pos, -1)

    def _decode(
        self,
        rows: list[tuple[int, int, bool]],
        reduce: Callable[[int, np.ndarray], Any] | None = None,
    ) -> dict[int, Any]:
        """Decode rows (token, position, want logits) on sequence 0 of the current context,
        in chunks; the wanted rows' log-softmaxes by row index (or `reduce(index, row)`, so
        that a long prompt's rows need not all be held at once)."""
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
                    row = log_softmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,)))
                    out[lo + i] = row if reduce is None else reduce(lo + i, row)
        return out
