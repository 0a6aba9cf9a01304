"""Chat Completions generation on the embedded engine: sampling, stops, penalties, grammar.

One request runs all its `n` choices in one thread that holds the engine's lock. Each
choice reports what it produces as `Delta` events (text released so far, with the tokens
that made it), so a streamed answer and a non-streamed one are the same events, collected
differently. Logprobs are the model's raw distribution (log-softmax of the logits) at each
position: before temperature, top_p, logit_bias, penalties and the grammar mask.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..._exceptions import RequestError
from .engine import LOGPROB_FLOOR, LocalEngine, log_softmax
from .grammar import Grammar


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


def choice_rngs(seed: int | None, n: int) -> list[np.random.Generator]:
    """One generator per choice: they differ, and the same seed reproduces the whole set."""
    entropy = None if seed is None else seed & 0xFFFF_FFFF_FFFF_FFFF
    return [np.random.default_rng(s) for s in np.random.SeedSequence(entropy).spawn(n)]


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
    """Generate `n` choices after `prompt`, reporting each as events; the cached prompt tokens.

    `cancel` set (the client went away, the server is stopping) raises Cancelled at the next
    token."""
    rngs = choice_rngs(seed, n)
    cached_first = 0
    with cache.engine.lock:
        for index, rng in enumerate(rngs):
            cached = _one_choice(cache, prompt, params, index, rng, emit, cancel)
            if index == 0:
                cached_first = cached
    return cached_first


def top_logprobs(
    engine: LocalEngine, logp: np.ndarray, k: int
) -> tuple[tuple[int, bytes, float], ...]:
    """The k most likely tokens at a position, most likely first (ties by token id)."""
    if k <= 0:
        return ()
    idx = np.argpartition(-logp, k)[:k]
    idx = idx[np.lexsort((idx, -logp[idx]))]
    return tuple((int(i), engine.piece(int(i)), max(float(logp[i]), LOGPROB_FLOOR)) for i in idx)


class _Sampler:
    """One choice's sampling state: penalties' counts, the grammar, the seeded generator."""

    def __init__(self, engine: LocalEngine, params: SamplingParams, rng: np.random.Generator):
        self.params = params
        self.rng = rng
        self.counts: dict[int, int] = {}
        self.grammar = Grammar(engine, params.grammar) if params.grammar else None
        self.bias_ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
        self.bias_vals = np.fromiter(params.logit_bias.values(), dtype=np.float64)

    def next(self, logits: np.ndarray) -> int | None:
        """The next token: biased, penalised, masked by the grammar, then drawn (None: the
        grammar allows nothing, which should not happen since it allows the end)."""
        p = self.params
        work = logits.copy()
        if len(self.bias_ids):
            work[self.bias_ids] += self.bias_vals
        if self.counts and (p.presence_penalty or p.frequency_penalty):
            ids = np.fromiter(self.counts.keys(), dtype=np.int64)
            c = np.fromiter(self.counts.values(), dtype=np.float64)
            work[ids] -= c * p.frequency_penalty + p.presence_penalty
        if self.grammar is not None:
            work = self.grammar.mask(work)
            if not np.isfinite(work).any():
                return None
        return _sample(work, p.temperature, p.top_p, self.rng)

    def accept(self, token: int) -> None:
        self.counts[token] = self.counts.get(token, 0) + 1
        if self.grammar is not None:
            self.grammar.accept(token)

    def close(self) -> None:
        if self.grammar is not None:
            self.grammar.close()


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
    sampler = _Sampler(engine, params, rng)
    releaser = _Releaser(params.stop)
    limit = min(params.max_tokens, engine.n_ctx - len(prompt))
    finish, produced = "length", 0
    try:
        for step in range(limit):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            logp = log_softmax(logits)
            tok = sampler.next(logits)
            if tok is None or engine.is_eog(tok):
                finish = "stop" if tok is not None else finish
                break
            sampler.accept(tok)
            top = top_logprobs(engine, logp, params.top_logprobs)
            out = TokenOut(tok, engine.piece(tok), max(float(logp[tok]), LOGPROB_FLOOR), top)
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
        sampler.close()
    delta = releaser.finish()
    if delta is not None:
        emit(Delta(index, delta.text, delta.tokens))
    emit(Finished(index, finish, produced))
    return cached


@dataclass
class ChoiceOut:
    """One choice, folded from its events: text, tokens, why it ended."""

    text: str = ""
    tokens: list[TokenOut] = field(default_factory=list)
    finish_reason: str = "length"
    completion_tokens: int = 0


def fold(events: Sequence[Event], n: int) -> list[ChoiceOut]:
    """The `n` choices a request's events make (what a non-streamed answer returns)."""
    out = [ChoiceOut() for _ in range(n)]
    for ev in events:
        choice = out[ev.index]
        if isinstance(ev, Delta):
            choice.text += ev.text
            choice.tokens.extend(ev.tokens)
        else:
            choice.finish_reason = ev.finish_reason
            choice.completion_tokens = ev.completion_tokens
    return out


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
