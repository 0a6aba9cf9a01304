"""`textcoder serve`: OpenAI's Chat Completions API over the embedded engine."""

from .app import DEFAULT_MAX_BODY, ServerConfig, create_app

__all__ = ["DEFAULT_MAX_BODY", "ServerConfig", "create_app"]
