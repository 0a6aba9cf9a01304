"""Engines behind one interface: `openai` (any OpenAI-compatible server) and `local` (llama.cpp)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._exceptions import UsageError
from ..models import is_local_model, list_models
from .base import Backend, Completion, CompletionParams, TokenLogprob

BACKENDS = ("local", "openai")


def base_urls(base_url: str | Sequence[str] | None) -> list[str]:
    """The servers asked for: `--base-url` (given several times), else `OPENAI_BASE_URL`
    (a comma-separated list)."""
    if isinstance(base_url, str):
        given = [base_url]
    else:
        given = list(base_url or []) or os.environ.get("OPENAI_BASE_URL", "").split(",")
    return [u.strip() for u in given if u.strip()]


def choose_backend(
    model: str | None, base_url: str | Sequence[str] | None, backend: str | None = None
) -> str:
    """Which engine a model and base URL mean.

    A base URL (or OPENAI_BASE_URL) means `openai`; otherwise a local alias or GGUF path
    (or no model at all: the embedded default) means `local`, and any other model name
    means OpenAI itself.
    """
    if backend is not None:
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        return backend
    if base_urls(base_url):
        return "openai"
    return "local" if is_local_model(model) else "openai"


def make_backend(
    model: str | None = None,
    base_url: str | Sequence[str] | None = None,
    api_key: str | None = None,
    backend: str | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    allow_mixed_models: bool = False,
) -> Backend:
    """The engine for `model` and `base_url` (see `choose_backend`), ready to answer."""
    kind = choose_backend(model, base_url, backend)
    if kind == "local":
        from .local import LocalBackend

        return LocalBackend(model)
    from .openai import OpenAIBackend

    urls = base_urls(base_url)
    no_server = not urls
    if no_server and backend is None and not (api_key or os.environ.get("OPENAI_API_KEY")):
        found = ", ".join(m.name for m in list_models()) or "none"
        raise UsageError(
            f"{model!r} is not a local model (found here: {found}; or give a .gguf path), and "
            "as a model on a server it needs OPENAI_API_KEY (or --base-url for a local server)"
        )

    def one(url: str | None) -> OpenAIBackend:
        return OpenAIBackend(
            model=model, base_url=url, api_key=api_key, timeout=timeout, max_retries=max_retries
        )

    if len(urls) > 1:
        from .pool import ServerPool

        return ServerPool([one(u) for u in urls], allow_mixed_models=allow_mixed_models)
    return one(urls[0] if urls else None)


__all__ = [
    "BACKENDS",
    "Backend",
    "Completion",
    "CompletionParams",
    "TokenLogprob",
    "choose_backend",
    "make_backend",
]
