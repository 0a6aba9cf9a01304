"""textcoder: code texts with chat models, with a probability for every category.

Importing the package is cheap: the public names below are loaded on first use (PEP 562),
so `textcoder --help` and `import textcoder` pull in neither pandas nor llama.cpp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .codebook import Category, Codebook, Example, Variable
    from .coder import Coder
    from .prompt import build_messages
    from .results import CodeResult
    from .scoring import VariableResult
    from .store import Store

#: public name -> the module that defines it, imported when the name is first asked for
_LAZY = {
    "Category": ".codebook",
    "Codebook": ".codebook",
    "Example": ".codebook",
    "Variable": ".codebook",
    "Coder": ".coder",
    "build_messages": ".prompt",
    "CodeResult": ".results",
    "VariableResult": ".scoring",
    "Store": ".store",
}


def __getattr__(name: str) -> Any:
    """`textcoder.Coder` and `from textcoder import Coder`: import the defining module now."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'textcoder' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
