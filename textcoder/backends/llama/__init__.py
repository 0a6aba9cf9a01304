"""llama.cpp in process, layered: `engine` (model, tokenizer, chat template, log-softmax) at
the bottom; `grammar`, `generate` and `exact` (generation, exact scoring) above it; `request`
(one translation of a request's fields); `LocalBackend` on top. Imports point downwards only.
"""

from .backend import LocalBackend
from .engine import LocalEngine

__all__ = ["LocalBackend", "LocalEngine"]
