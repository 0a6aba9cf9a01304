"""textcoder's version, written once (pyproject.toml reads it too)."""

__version__ = "0.1.0"
