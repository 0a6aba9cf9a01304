"""The bottom of the llama.cpp stack: one GGUF model, its tokenizer, its chat template, and the
one log-softmax that every reported logprob comes from.

Nothing here samples or scores; `generate` and `exact` build on it, `LocalBackend` and
`textcoder serve` on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np

from ..._exceptions import BackendError, ModelError
from ...models import LocalModel
from ..base import Message

#: OpenAI's floor for a logprob ("-9999.0 if not within the top 20")
LOGPROB_FLOOR = -9999.0
#: no context longer than this unless asked: the training context can be huge
DEFAULT_MAX_CTX = 8192


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p over the vocabulary from raw logits, in float64 (the model's own distribution)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    return z - np.log(np.exp(z).sum())  # type: ignore[no-any-return]


class LocalEngine:
    """One GGUF model loaded in this process, with its chat template and tokenizer.

    Not thread-safe by itself: callers hold `lock` around anything that evaluates tokens.
    """

    def __init__(self, model: LocalModel, n_ctx: int | None = None, n_threads: int | None = None):
        self.info = model
        self.lock = threading.RLock()
        self.llm = _load(model, n_ctx or 0, n_threads)
        if n_ctx is None and self.llm.n_ctx() > DEFAULT_MAX_CTX:
            self.llm.close()
            self.llm = _load(model, DEFAULT_MAX_CTX, n_threads)
        # close the model before interpreter shutdown tears llama_cpp down (else a traceback)
        weakref.finalize(self, self.llm.close)
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model.path}: the GGUF has no chat template in its metadata")
        self.chat_template = template
        self.formatter = self.chat_formatter(add_generation_prompt=True)
        self.add_bos = bool(self.llm._model.add_bos_token())
        self.n_vocab = self.llm.n_vocab()
        self.fingerprint = "fp_" + _file_digest(model.path)[:10]
        self._pieces: dict[int, bytes] = {}  # token id -> bytes, at most the vocabulary

    def chat_formatter(self, *, add_generation_prompt: bool) -> Any:
        """llama-cpp-python's Jinja2 formatter for this model's chat template."""
        from llama_cpp import llama_chat_format

        return llama_chat_format.Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self.token_text(self.llm.token_eos()),
            bos_token=self.token_text(self.llm.token_bos()),
            add_generation_prompt=add_generation_prompt,
        )

    def token_text(self, token: int) -> str:
        """A token's text as the vocabulary spells it ("" for none)."""
        if token < 0:
            return ""
        return str(self.llm._model.token_get_text(token))

    @property
    def n_ctx(self) -> int:
        return int(self.llm.n_ctx())

    def render(self, messages: Sequence[Message | dict[str, Any]]) -> str:
        """The prompt text the model's chat template makes of `messages`, ready for the answer."""
        return str(self.formatter(messages=cast(Any, list(messages))).prompt)

    def tokenize(self, text: str, *, bos: bool | None = None, special: bool = True) -> list[int]:
        """Token ids of `text`; special tokens in it (`<|im_start|>`) are parsed as such."""
        add_bos = self.add_bos if bos is None else bos
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def piece(self, token: int) -> bytes:
        """The raw bytes of one token as it appears in text (a partial UTF-8 char stays partial)."""
        got = self._pieces.get(token)
        if got is None:
            got = self._pieces[token] = self._piece(token)
        return got

    def _piece(self, token: int) -> bytes:
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

    def scoring_context(self) -> Any:
        """A llama.cpp context of its own on this model, for scoring: the engine's generation
        state (and llama-cpp-python's bookkeeping of it) is never touched."""
        from llama_cpp import _internals

        llm = self.llm
        params = type(llm.context_params).from_buffer_copy(llm.context_params)
        # the engine's thread count for batches too: llama-cpp-python's default for batches is
        # every core, and on a busy machine a spinning extra thread costs 10x on prompt decodes
        params.n_threads_batch = params.n_threads
        try:
            with quiet():
                return _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp: cannot create a scoring context: {exc}") from None

    def kv_bytes(self) -> int:
        """The bytes of one context's KV cache (f16 keys and values over the whole context)."""
        import llama_cpp

        model = self.llm._model.model
        layers = int(llama_cpp.llama_model_n_layer(model))
        heads = max(1, int(llama_cpp.llama_model_n_head(model)))
        kv_heads = int(llama_cpp.llama_model_n_head_kv(model))
        head_dim = int(llama_cpp.llama_model_n_embd(model)) // heads
        return 2 * layers * self.n_ctx * kv_heads * head_dim * 2


def _load(model: LocalModel, n_ctx: int, n_threads: int | None) -> Any:
    from .load import load_llama

    threads = n_threads or os.cpu_count() or 1
    try:
        with quiet():
            return load_llama(
                str(model.path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=512,
                verbose=False,
            )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{model.path}: cannot load the model: {exc}") from None


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
def quiet() -> Iterator[None]:
    """Silence llama.cpp's C-level logging to stderr while loading."""
    try:
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:  # pragma: no cover - older llama-cpp-python
        yield
        return
    with suppress_stdout_stderr(disable=False):
        yield
