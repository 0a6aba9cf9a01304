"""textcoder: code texts with chat models, with a probability for every category.

Importing the package is cheap: the public names below are loaded on first use (PEP 562),
so `textcoder --help` and `import textcoder` pull in neither pandas nor llama.cpp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import (
    BackendError,
    CodebookError,
    DataError,
    ModelError,
    RequestError,
    TextcoderError,
    UsageError,
)
from ._lazy import lazy_getattr
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


#: `textcoder.Coder`, `from textcoder import Coder`: the defining module imported now
__getattr__ = lazy_getattr(__name__, _LAZY, globals())


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
