"""Chat Completions generation on the embedded engine: sampling, stops, penalties, grammar.

One request runs all its `n` choices in one thread that holds the engine's lock. Each
choice reports what it produces as `Delta` events (text released so far, with the tokens
that made it), so a streamed answer and a non-streamed one are the same events, collected
differently. Logprobs are the model's raw distribution (log-softmax of the logits) at each
position: before temperature, top_p, logit_bias, penalties and the grammar mask.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .._exceptions import RequestError
from .local import LocalEngine

#: OpenAI's floor for a logprob ("-9999.0 if not within the top 20")
LOGPROB_FLOOR = -9999.0


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks of the sampler (validated by the server before it gets here)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0
    grammar: str | None = None  # GBNF, root rule `root`


@dataclass(frozen=True)
class TokenOut:
    """One generated token: its id, raw bytes, raw logprob and the top alternatives."""

    id: int
    piece: bytes
    logprob: float
    top: tuple[tuple[int, bytes, float], ...]


@dataclass(frozen=True)
class Delta:
    """Text released by one choice, with the tokens that produced it (maybe none yet)."""

    index: int
    text: str
    tokens: tuple[TokenOut, ...]


@dataclass(frozen=True)
class Finished:
    """A choice ended: `stop` (end of turn, stop string) or `length` (max_tokens, context)."""

    index: int
    finish_reason: str
    completion_tokens: int


Event = Delta | Finished


class Cancelled(Exception):
    """The client went away; the request stops at the next token."""


class GrammarError(ValueError):
    """A GBNF grammar llama.cpp could not parse."""


class Grammar:
    """A llama.cpp grammar sampler used only as a mask: which tokens may come next."""

    def __init__(self, engine: LocalEngine, gbnf: str) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._ptr = llama_cpp.llama_sampler_init_grammar(
            engine.llm._model.vocab, gbnf.encode("utf-8"), b"root"
        )
        if not self._ptr:
            raise GrammarError("llama.cpp could not parse the grammar")
        n = engine.n_vocab
        self._ids = np.arange(n, dtype=np.intc)
        self._data = np.recarray(
            (n,),
            dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True),
        )
        self._arr = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=n,
            selected=-1,
            sorted=False,
        )

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """`logits` with every token the grammar forbids here set to -inf."""
        n = len(self._ids)
        self._data.id[:] = self._ids
        self._data.logit[:] = 0.0
        self._data.p[:] = 0.0
        self._arr.size = n
        self._arr.selected = -1
        self._arr.sorted = False
        self._llama_cpp.llama_sampler_apply(self._ptr, ctypes.byref(self._arr))
        size = int(self._arr.size)
        banned = np.zeros(n, dtype=bool)
        ids = np.asarray(self._data["id"][:size])
        banned[ids[~np.isfinite(np.asarray(self._data["logit"][:size]))]] = True
        if size < n:  # tokens dropped from the array are forbidden too
            kept = np.zeros(n, dtype=bool)
            kept[ids] = True
            banned |= ~kept
        out = logits.copy()
        out[banned] = -np.inf
        return out

    def accept(self, token: int) -> None:
        self._llama_cpp.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            self._llama_cpp.llama_sampler_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        self.close()


def check_grammar(engine: LocalEngine, gbnf: str) -> None:
    """Raise GrammarError if llama.cpp cannot parse `gbnf` (before a request starts)."""
    Grammar(engine, gbnf).close()


def choice_rngs(seed: int | None, n: int) -> list[np.random.Generator]:
    """One generator per choice: they differ, and the same seed reproduces the whole set."""
    entropy = None if seed is None else seed & 0xFFFF_FFFF_FFFF_FFFF
    return [np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(n)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    return z - np.log(np.exp(z).sum())  # type: ignore[no-any-return]


class _Releaser:
    """Holds back text that may be the start of a stop string; cuts at a stop string."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s.encode("utf-8") for s in stops if s]
        self.buf = bytearray()
        self.tokens: list[TokenOut] = []
        self.starts: list[int] = []
        self.n_released = 0
        self.bytes_released = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, tok: TokenOut) -> tuple[Delta | None, bool]:
        """Add a token; the text now safe to send, and whether a stop string ended the text."""
        before = len(self.buf)
        self.tokens.append(tok)
        self.starts.append(before)
        self.buf += tok.piece
        if not self.stops:
            return self._release(len(self.buf), final=False), False
        longest = max(len(s) for s in self.stops)
        lo = max(0, before - longest + 1)
        cuts = [i for s in self.stops if (i := self.buf.find(s, lo)) >= 0]
        if cuts:
            return self._release(min(cuts), final=True), True
        hold = len(self.buf)
        for h in range(max(self.bytes_released, len(self.buf) - longest + 1), len(self.buf)):
            tail = bytes(self.buf[h:])
            if any(s.startswith(tail) for s in self.stops):
                hold = h
                break
        return self._release(hold, final=False), False

    def finish(self) -> Delta | None:
        return self._release(len(self.buf), final=True)

    def _release(self, upto: int, *, final: bool) -> Delta | None:
        """Release the tokens that start before `upto` (all of them end by it unless final)."""
        toks: list[TokenOut] = []
        i = self.n_released
        while i < len(self.tokens):
            start = self.starts[i]
            end = start + len(self.tokens[i].piece)
            if (final and start < upto) or (not final and end <= upto):
                toks.append(self.tokens[i])
                i += 1
            else:
                break
        end_byte = (
            upto
            if final
            else (
                self.starts[i - 1] + len(self.tokens[i - 1].piece) if toks else self.bytes_released
            )
        )
        end_byte = max(end_byte, self.bytes_released)
        text = self.decoder.decode(bytes(self.buf[self.bytes_released : end_byte]), final=final)
        self.n_released = i
        self.bytes_released = end_byte
        if not toks and not text:
            return None
        return Delta(0, text, tuple(toks))


def generate_choices(
    cache: PromptCache,
    prompt: Sequence[int],
    params: SamplingParams,
    n: int,
    seed: int | None,
    emit: Callable[[Event], None],
    cancel: threading.Event | None = None,
) -> int:
    """Generate `n` choices after `prompt`, reporting each as events; the cached prompt tokens."""
    rngs = choice_rngs(seed, n)
    cached_first = 0
    with cache.engine.lock:
        for index, rng in enumerate(rngs):
            cached = _one_choice(cache, prompt, params, index, rng, emit, cancel)
            if index == 0:
                cached_first = cached
    return cached_first


def _one_choice(
    cache: PromptCache,
    prompt: Sequence[int],
    params: SamplingParams,
    index: int,
    rng: np.random.Generator,
    emit: Callable[[Event], None],
    cancel: threading.Event | None,
) -> int:
    if cancel is not None and cancel.is_set():
        raise Cancelled
    engine = cache.engine
    logits, cached = cache.eval(prompt)
    grammar = Grammar(engine, params.grammar) if params.grammar else None
    releaser = _Releaser(params.stop)
    counts: dict[int, int] = {}
    bias_ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
    bias_vals = np.fromiter(params.logit_bias.values(), dtype=np.float64)
    room = engine.n_ctx - len(prompt)
    limit = min(params.max_tokens, room)
    finish = "length"
    produced = 0
    try:
        for step in range(limit):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            logp = log_softmax(logits)
            work = logits.copy()
            if len(bias_ids):
                work[bias_ids] += bias_vals
            if counts and (params.presence_penalty or params.frequency_penalty):
                ids = np.fromiter(counts.keys(), dtype=np.int64)
                c = np.fromiter(counts.values(), dtype=np.float64)
                work[ids] -= c * params.frequency_penalty + params.presence_penalty
            if grammar is not None:
                work = grammar.mask(work)
                if not np.isfinite(work).any():
                    break  # the grammar allows nothing more (should not happen: EOS is allowed)
            tok = _sample(work, params.temperature, params.top_p, rng)
            if engine.is_eog(tok):
                finish = "stop"
                break
            if grammar is not None:
                grammar.accept(tok)
            top: tuple[tuple[int, bytes, float], ...] = ()
            k = params.top_logprobs
            if k > 0:
                idx = np.argpartition(-logp, k)[:k]
                idx = idx[np.lexsort((idx, -logp[idx]))]
                top = tuple(
                    (int(i), engine.piece(int(i)), max(float(logp[i]), LOGPROB_FLOOR)) for i in idx
                )
            out = TokenOut(tok, engine.piece(tok), max(float(logp[tok]), LOGPROB_FLOOR), top)
            counts[tok] = counts.get(tok, 0) + 1
            produced += 1
            delta, stopped = releaser.add(out)
            if delta is not None:
                emit(Delta(index, delta.text, delta.tokens))
            if stopped:
                emit(Finished(index, "stop", produced))
                return cached
            if step + 1 < limit:
                cache.tune()
                engine.llm.eval([tok])
                logits = engine.last_logits()
    finally:
        if grammar is not None:
            grammar.close()
    delta = releaser.finish()
    if delta is not None:
        emit(Delta(index, delta.text, delta.tokens))
    emit(Finished(index, finish, produced))
    return cached


class PromptCache:
    """Evaluates prompts after the longest cached prefix, so that answers do not depend on it.

    llama.cpp computes a 1-token batch with other kernels than a longer one, and the
    logprobs differ (up to 0.7 nats on SmolLM2 Q4_1). So every prompt is evaluated as
    [the uncached part but its last token, as one batch of >= 2 tokens] + [the last token
    alone], and only positions that were computed inside such batches are reused: cold or
    warm, each position's numbers come from the same kind of batch.
    """

    def __init__(self, engine: LocalEngine, threads: Callable[[], int] | None = None) -> None:
        self.engine = engine
        self.batched = 0  # leading cache positions computed in multi-token batches
        self.threads = threads  # how many CPU threads this engine may use now
        self._n_threads = 0
        self._last: tuple[tuple[int, ...], np.ndarray] | None = None  # prompt, its logits

    def tune(self) -> None:
        """Give the engine the threads it may use now (the same numbers whatever the count)."""
        if self.threads is None:
            return
        n = self.threads()
        if n != self._n_threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.engine.llm._ctx.ctx, n, n)
            self._n_threads = n

    def eval(self, tokens: Sequence[int]) -> tuple[np.ndarray, int]:
        """The logits after `tokens`, and how many leading tokens came from the cache."""
        self.tune()
        engine, llm = self.engine, self.engine.llm
        if not tokens:
            raise RequestError("the prompt is empty")
        if len(tokens) >= engine.n_ctx:
            raise RequestError(
                f"the prompt is {len(tokens)} tokens, the model's context is {engine.n_ctx}"
            )
        key = tuple(tokens)
        if (
            self._last is not None
            and self._last[0] == key
            and llm.n_tokens >= len(key)
            and np.array_equal(llm.input_ids[: len(key)], tokens)
        ):  # the same prompt again (n choices, a repeated request): its cache is intact
            llm.n_tokens = len(key)
            return self._last[1].copy(), len(key)
        body = len(tokens) - 1  # everything but the last token
        limit = min(llm.n_tokens, self.batched, body)
        cached = llm.input_ids[:limit]
        common = 0
        while common < limit and cached[common] == tokens[common]:
            common += 1
        if body - common == 1:  # a 1-token batch would use the other kernels: take 2
            common -= 1
        llm.n_tokens = common
        if body > common:
            llm.eval(list(tokens[common:body]))
        self.batched = body
        llm.eval([tokens[body]])
        logits = engine.last_logits()
        self._last = (key, logits.copy())
        return logits, common


def _sample(work: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Greedy at temperature 0; else a draw from softmax(work / T) cut to the top_p nucleus."""
    if temperature <= 0:
        return int(np.argmax(work))
    z = work / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    cum = np.cumsum(p)
    return int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), len(p) - 1))
