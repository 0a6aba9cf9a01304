"""textcoder: code texts with chat models, with a probability for every category."""

from __future__ import annotations

from ._exceptions import (
    BackendError,
    CodebookError,
    DataError,
    ModelError,
    RequestError,
    TextcoderError,
    UsageError,
)
from ._version import __version__
from .codebook import Category, Codebook, Example, Variable
from .coder import Coder
from .prompt import build_messages
from .results import CodeResult
from .scoring import VariableResult
from .store import Store

__all__ = [
    "BackendError",
    "Category",
    "CodeResult",
    "Codebook",
    "CodebookError",
    "Coder",
    "DataError",
    "Example",
    "ModelError",
    "RequestError",
    "Store",
    "TextcoderError",
    "UsageError",
    "Variable",
    "VariableResult",
    "__version__",
    "build_messages",
]
