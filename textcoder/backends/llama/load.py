"""Loading a GGUF file into llama-cpp-python's `Llama` with settings that are safe on any CPU.

llama.cpp's "extra buffer types" (weights repacked for AVX-512/AMX kernels) crash native
builds on Xeons with AMX (a SIGSEGV in `llama_decode` on any multi-token prompt). They are off
unless `TEXTCODER_EXTRA_BUFTS=1`; every `Llama` textcoder makes goes through `load_llama`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

#: "1" turns llama.cpp's extra CPU buffer types (weight repacking, AMX) back on
ENV_EXTRA_BUFTS = "TEXTCODER_EXTRA_BUFTS"

_PATCH_LOCK = threading.Lock()


def extra_bufts() -> bool:
    """Whether models load with llama.cpp's extra CPU buffer types (off unless asked for)."""
    value = os.environ.get(ENV_EXTRA_BUFTS, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{ENV_EXTRA_BUFTS}={value!r}: use 1 (on) or 0 (off)")


def supports_extra_bufts_switch() -> bool:
    """Whether this llama-cpp-python's model parameters have the `use_extra_bufts` field."""
    import llama_cpp

    fields = getattr(llama_cpp.llama_model_params, "_fields_", [])
    return any(name == "use_extra_bufts" for name, *_ in fields)


@contextlib.contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """`Llama` takes no `use_extra_bufts` argument: set it on the default model parameters
    that its constructor starts from, for the duration of one load."""
    import llama_cpp.llama_cpp as lib

    if use_extra_bufts or not supports_extra_bufts_switch():
        yield
        return
    original = lib.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _PATCH_LOCK:
        lib.llama_model_default_params = defaults
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def load_llama(model_path: str, **kwargs: Any) -> Any:
    """A `llama_cpp.Llama` for `model_path`, with the extra buffer types as `extra_bufts()` says."""
    from llama_cpp import Llama

    with _model_params(extra_bufts()):
        return Llama(model_path=model_path, **kwargs)
