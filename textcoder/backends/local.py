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
import json
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np

from .._exceptions import BackendError, ModelError, RequestError
from ..models import LocalModel, resolve_model
from .base import (
    Backend,
    Capabilities,
    Completion,
    CompletionParams,
    ContinuationRequest,
    Message,
    TokenLogprob,
)
from .base import ContinuationScores as Scores
from .llama_exact import ContinuationScores, ExactScorer


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

    def last_logits(self) -> np.ndarray:
        """A copy of the logits after the last evaluated token."""
        ptr = self.llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)


class LocalBackend(Backend):
    """The embedded engine: a GGUF model run by llama.cpp in this process."""

    name = "local"
    default_concurrency = 1

    def __init__(
        self, model: str | None = None, n_ctx: int | None = None, n_threads: int | None = None
    ) -> None:
        from .llama_generate import PromptCache

        self.info = resolve_model(model)
        self.engine = LocalEngine(self.info, n_ctx=n_ctx, n_threads=n_threads)
        #: evaluates prompts after the cached prefix, the same way cold or warm
        self.prompts = PromptCache(self.engine)
        self._exact: ExactScorer | None = None

    @property
    def model(self) -> str:
        return self.info.name

    def capabilities(self) -> Capabilities:
        """Logprobs, top_logprobs, n choices, json_schema (by grammar) and continuation
        scoring (with a cached prefix): all honoured."""
        return Capabilities(
            logprobs=True, top_logprobs=True, n=True, json_schema=True, continuations=True
        )

    def truncate(self, text: str, around: Sequence[Message], answer_tokens: int) -> str:
        """Keep the text's first tokens that fit the context after the rest of the prompt."""
        engine = self.engine
        overhead = len(engine.tokenize(engine.render(around)))
        room = max(1, engine.n_ctx - overhead - answer_tokens - 16)  # 16: label tokens
        tokens = engine.tokenize(text, bos=False)
        if len(tokens) <= room:
            return text
        return b"".join(engine.piece(t) for t in tokens[:room]).decode("utf-8", errors="ignore")

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
        self,
        messages: Sequence[Message],
        continuations: Sequence[str],
        n_prefix: int,
        head: str = "",
    ) -> ContinuationScores:
        """log P(continuation | prompt) for each continuation; `messages[:n_prefix]` and the
        last message's opening `head` are cached."""
        try:
            return self.exact_scorer().score(messages, continuations, n_prefix, head)
        except (RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc

    def exact_scorer(self) -> ExactScorer:
        """The engine's prefix-caching scorer, made on first use (it adds llama.cpp sequences)."""
        with self.engine.lock:
            if self._exact is None:
                self._exact = ExactScorer(self.engine)
            return self._exact

    async def score_continuations(self, request: ContinuationRequest) -> Scores:
        scored = await asyncio.to_thread(
            self.score_continuations_sync,
            request.messages,
            request.continuations,
            request.n_prefix,
            request.head,
        )
        return Scores(
            tuple(scored.logprobs), scored.prompt_tokens, self.model, self.engine.fingerprint
        )

    def complete_sync(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        """Answer one chat request in this thread, with the generator `textcoder serve` uses
        (so answers and logprobs equal the server's); `response_format` is enforced by grammar."""
        from .llama_generate import Delta, Event, Finished, SamplingParams, generate_choices

        engine = self.engine
        tokens = engine.tokenize(engine.render(messages))
        n = max(1, params.n)
        sampling = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_logprobs=params.top_logprobs if params.logprobs else 0,
            grammar=_grammar(params.extra.get("response_format")),
        )
        pieces: list[list[bytes]] = [[] for _ in range(n)]
        toks: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finish: list[str | None] = [None] * n
        produced = [0] * n

        def collect(event: Event) -> None:
            if isinstance(event, Delta):
                for t in event.tokens:
                    pieces[event.index].append(t.piece)
                    toks[event.index].append(
                        TokenLogprob(
                            _text(t.piece), t.logprob, tuple((_text(b), lp) for _, b, lp in t.top)
                        )
                    )
            elif isinstance(event, Finished):
                finish[event.index] = event.finish_reason
                produced[event.index] = event.completion_tokens

        try:
            generate_choices(self.prompts, tokens, sampling, n, params.seed, collect)
        except (RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp failed: {exc}") from exc
        texts = tuple(b"".join(p).decode("utf-8", errors="replace") for p in pieces)
        return Completion(
            text=texts[0],
            tokens=tuple(toks[0]) if params.logprobs else (),
            model=self.model,
            system_fingerprint=engine.fingerprint,
            prompt_tokens=len(tokens),
            completion_tokens=sum(produced),
            finish_reason=finish[0],
            choices=texts,
        )

    async def complete(self, messages: Sequence[Message], params: CompletionParams) -> Completion:
        return await asyncio.to_thread(self.complete_sync, messages, params)


def _grammar(response_format: object) -> str | None:
    """A GBNF grammar for a `response_format` (json_object or json_schema), else None."""
    if not isinstance(response_format, dict) or response_format.get("type") == "text":
        return None
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema: object = {"type": "object"}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or schema
    try:
        return str(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, AssertionError, KeyError, TypeError, RecursionError) as exc:
        raise RequestError(f"cannot enforce this JSON Schema with a grammar: {exc}") from None


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="replace")


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
