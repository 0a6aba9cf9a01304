"""llama.cpp in process through llama-cpp-python: the embedded default engine.

Generation is a short loop over the model's logits (no `logits_all`, so memory does not grow
with the context): the prompt's tokens are evaluated after the longest prefix already in the
KV cache, so a shared codebook prefix is evaluated once and reused by every text.
Reported logprobs are the model's raw distribution (log-softmax of the logits), before
temperature; sampling at temperature > 0 draws from softmax(logits / T) with a seeded RNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .._exceptions import BackendError, ModelError, RequestError
from ..models import LocalModel, resolve_model
from ..prompt import Message
from .base import Backend, Completion, CompletionParams, TokenLogprob
from .llama_exact import ContinuationScores, ExactScorer


@dataclass(frozen=True)
class Generated:
    """Tokens generated for one prompt, with the logprob data the Chat API reports."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    top: tuple[tuple[tuple[int, float], ...], ...]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int


class LocalEngine:
    """One GGUF model loaded in this process, with its chat template and tokenizer.

    Not thread-safe by itself: callers hold `lock` around anything that evaluates tokens.
    """

    def __init__(self, model: LocalModel, n_ctx: int | None = None, n_threads: int | None = None):
        from llama_cpp import Llama, llama_chat_format

        self.info = model
        self.lock = threading.RLock()
        try:
            with _quiet():
                self.llm = Llama(
                    model_path=str(model.path),
                    n_ctx=n_ctx or 0,
                    n_threads=n_threads or os.cpu_count() or 1,
                    n_threads_batch=n_threads or os.cpu_count() or 1,
                    n_batch=512,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{model.path}: cannot load the model: {exc}") from None
        if n_ctx is None and self.llm.n_ctx() > 8192:
            with _quiet():  # the training context can be huge; 8k is plenty to code texts
                self.llm = Llama(
                    model_path=str(model.path),
                    n_ctx=8192,
                    n_threads=n_threads or os.cpu_count() or 1,
                    n_threads_batch=n_threads or os.cpu_count() or 1,
                    n_batch=512,
                    verbose=False,
                )
        # close the model before interpreter shutdown tears llama_cpp down (else a traceback)
        weakref.finalize(self, self.llm.close)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model.path}: the GGUF has no chat template in its metadata")
        self.chat_template = template
        self.formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        self.add_bos = bool(self.llm._model.add_bos_token())
        self.n_vocab = self.llm.n_vocab()
        self.fingerprint = "fp_" + _file_digest(model.path)[:10]

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return str(self.llm._model.token_get_text(token))

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def render(self, messages: Sequence[Message | dict[str, Any]]) -> str:
        """The prompt text the model's chat template makes of `messages`, ready for the answer."""
        return str(self.formatter(messages=cast(Any, list(messages))).prompt)

    def tokenize(self, text: str, *, bos: bool | None = None) -> list[int]:
        """Token ids of `text`; special tokens in it (`<|im_start|>`) are parsed as such."""
        add_bos = self.add_bos if bos is None else bos
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def piece(self, token: int) -> bytes:
        """The raw bytes of one token as it appears in text (a partial UTF-8 char stays partial)."""
        import ctypes

        import llama_cpp

        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.llm._model.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends the turn (end of text, end of turn)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def eval_prompt(self, tokens: Sequence[int]) -> tuple[np.ndarray, int]:
        """Evaluate `tokens` after the longest prefix already in the cache; the last logits."""
        if not tokens:
            raise RequestError("the prompt is empty")
        if len(tokens) >= self.n_ctx:
            raise RequestError(
                f"the prompt is {len(tokens)} tokens, the model's context is {self.n_ctx}"
            )
        llm = self.llm
        common = 0
        # always evaluate >= 2 tokens: llama.cpp's logits for a token evaluated alone differ
        # from the same token in a batch (up to 0.7 nats on this build), so a prompt found
        # whole in the cache would otherwise score differently from a cold one
        limit = max(0, min(llm.n_tokens, len(tokens) - 2))
        cached = llm.input_ids[:limit]
        while common < limit and cached[common] == tokens[common]:
            common += 1
        llm.n_tokens = common
        llm.eval(list(tokens[common:]))
        return self.last_logits(), common

    def last_logits(self) -> np.ndarray:
        """A copy of the logits after the last evaluated token."""
        ptr = self.llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)

    def generate(
        self,
        prompt_tokens: Sequence[int],
        max_tokens: int,
        temperature: float = 0.0,
        top_logprobs: int = 0,
        seed: int | None = None,
    ) -> Generated:
        """Generate up to `max_tokens` tokens after the prompt (greedy at temperature 0)."""
        rng = np.random.default_rng(seed)
        with self.lock:
            logits, cached = self.eval_prompt(prompt_tokens)
            ids: list[int] = []
            lps: list[float] = []
            tops: list[tuple[tuple[int, float], ...]] = []
            finish = "length"
            room = self.n_ctx - len(prompt_tokens)
            for _ in range(min(max_tokens, room)):
                logp = _log_softmax(logits)
                if temperature <= 0:
                    tok = int(np.argmax(logp))
                else:
                    z = logits / temperature
                    p = np.exp(z - z.max())
                    tok = int(rng.choice(self.n_vocab, p=p / p.sum()))
                if self.is_eog(tok):
                    finish = "stop"
                    break
                ids.append(tok)
                lps.append(float(logp[tok]))
                if top_logprobs > 0:
                    idx = np.argpartition(-logp, top_logprobs)[:top_logprobs]
                    idx = idx[np.argsort(-logp[idx], kind="stable")]
                    tops.append(tuple((int(i), float(logp[i])) for i in idx))
                else:
                    tops.append(())
                self.llm.eval([tok])
                logits = self.last_logits()
            return Generated(
                tuple(ids), tuple(lps), tuple(tops), finish, len(prompt_tokens), cached
            )


class LocalBackend(Backend):
    """The embedded engine: a GGUF model run by llama.cpp in this process."""

    name = "local"
    default_scoring = "exact"
    default_concurrency = 1

    def __init__(
        self, model: str | None = None, n_ctx: int | None = None, n_threads: int | None = None
    ) -> None:
        self.info = resolve_model(model)
        self.engine = LocalEngine(self.info, n_ctx=n_ctx, n_threads=n_threads)
        self._exact: ExactScorer | None = None

    @property
    def model(self) -> str:
        return self.info.name

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "model_path": str(self.info.path),
            "model_source": self.info.source,
            "system_fingerprint": self.engine.fingerprint,
            "n_ctx": self.engine.n_ctx,
            **({"exact": self._exact.stats.as_dict()} if self._exact is not None else {}),
        }

    def score_continuations_sync(
        self, messages: Sequence[Message], continuations: Sequence[str], n_prefix: int
    ) -> ContinuationScores:
        """log P(continuation | prompt) for each continuation; `messages[:n_prefix]` is cached."""
        try:
            return self.exact_scorer().score(messages, continuations, n_prefix)
        except (RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc

    def exact_scorer(self) -> ExactScorer:
        """The engine's prefix-caching scorer, made on first use (it adds llama.cpp sequences)."""
        with self.engine.lock:
            if self._exact is None:
                self._exact = ExactScorer(self.engine)
            return self._exact

    async def score_continuations(
        self, messages: Sequence[Message], continuations: Sequence[str], n_prefix: int
    ) -> ContinuationScores:
        return await asyncio.to_thread(
            self.score_continuations_sync, messages, continuations, n_prefix
        )

    def complete_sync(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        """Answer one chat request in this thread (`n` choices: seeds seed, seed+1, ...)."""
        engine = self.engine
        tokens = engine.tokenize(engine.render(messages))
        gens = []
        for i in range(max(1, params.n)):
            try:
                gens.append(
                    engine.generate(
                        tokens,
                        max_tokens=params.max_tokens,
                        temperature=params.temperature,
                        top_logprobs=params.top_logprobs if params.logprobs else 0,
                        seed=None if params.seed is None else params.seed + i,
                    )
                )
            except (RuntimeError, OSError) as exc:
                raise BackendError(f"llama.cpp failed: {exc}") from exc
        texts = tuple(
            b"".join(engine.piece(t) for t in g.token_ids).decode("utf-8", errors="replace")
            for g in gens
        )
        gen, text = gens[0], texts[0]
        toks: tuple[TokenLogprob, ...] = ()
        if params.logprobs:
            toks = tuple(
                TokenLogprob(
                    token=_text(engine.piece(t)),
                    logprob=lp,
                    top=tuple((_text(engine.piece(a)), alp) for a, alp in top),
                )
                for t, lp, top in zip(gen.token_ids, gen.logprobs, gen.top, strict=True)
            )
        return Completion(
            text=text,
            tokens=toks,
            model=self.model,
            system_fingerprint=engine.fingerprint,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=sum(len(g.token_ids) for g in gens),
            finish_reason=gen.finish_reason,
            choices=texts,
        )

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        return await asyncio.to_thread(self.complete_sync, messages, params)


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    return z - np.log(np.exp(z).sum())  # type: ignore[no-any-return]


def _file_digest(path: os.PathLike[str] | str, chunk: int = 1 << 20) -> str:
    """A fingerprint of a model file from its size and first and last MiB (fast on big files)."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(0, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence llama.cpp's C-level logging to stderr while loading."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # pragma: no cover - older llama-cpp-python
        yield
        return
    with suppress_stdout_stderr(disable=False):
        yield
