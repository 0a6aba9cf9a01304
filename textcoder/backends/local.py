"""The embedded engine's old address: `textcoder.backends.llama` holds it now."""

from .llama import LocalBackend, LocalEngine

__all__ = ["LocalBackend", "LocalEngine"]
