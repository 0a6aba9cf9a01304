"""`textcoder serve`: OpenAI's Chat Completions, Responses and legacy Completions APIs over
the embedded engine, through the same generation path as `LocalBackend`."""

from .app import create_app
from .state import DEFAULT_MAX_BODY, ServerConfig

__all__ = ["DEFAULT_MAX_BODY", "ServerConfig", "create_app"]
