"""Engines behind one interface: `openai` (any OpenAI-compatible server) and `local` (llama.cpp)."""

from __future__ import annotations

import os

from .._exceptions import UsageError
from ..models import is_local_model, list_models
from .base import Backend, Completion, CompletionParams, TokenLogprob

BACKENDS = ("local", "openai")


def choose_backend(model: str | None, base_url: str | None, backend: str | None = None) -> str:
    """Which engine a model and base URL mean.

    A base URL (or OPENAI_BASE_URL) means `openai`; otherwise a local alias or GGUF path
    (or no model at all: the embedded default) means `local`, and any other model name
    means OpenAI itself.
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        return backend
    if base_url or os.environ.get("OPENAI_BASE_URL"):
        return "openai"
    return "local" if is_local_model(model) else "openai"


def make_backend(
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    backend: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
) -> Backend:
    """The engine for `model` and `base_url` (see `choose_backend`), ready to answer."""
    kind = choose_backend(model, base_url, backend)
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(model)
    from .openai import OpenAIBackend

    no_server = not (base_url or os.environ.get("OPENAI_BASE_URL"))
    if no_server and backend is None and not (api_key or os.environ.get("OPENAI_API_KEY")):
        found = ", ".join(m.name for m in list_models()) or "none"
        raise UsageError(
            f"{model!r} is not a local model (found here: {found}; or give a .gguf path), and "
            "as a model on a server it needs OPENAI_API_KEY (or --base-url for a local server)"
        )
    return OpenAIBackend(
        model=model, base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries
    )


__all__ = [
    "BACKENDS",
    "Backend",
    "Completion",
    "CompletionParams",
    "TokenLogprob",
    "choose_backend",
    "make_backend",
]
