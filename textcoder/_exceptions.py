"""textcoder's exceptions, one tree, so callers can catch as broadly or narrowly as they need.

TextcoderError
├── CodebookError          a codebook file that cannot be loaded (names file, line, field)
├── DataError              an input table that cannot be coded (names file, row, column)
├── ModelError             a local model that cannot be found or loaded
├── BackendError           an engine or server that failed to answer
│   └── RequestError       one request the engine refused (a 400: not worth retrying)
└── UsageError             arguments that do not fit together
"""

from __future__ import annotations


class TextcoderError(Exception):
    """Base of every error textcoder raises on purpose; its message is one line for the user."""


class CodebookError(TextcoderError):
    """A codebook that is missing, not YAML, or not a valid codebook."""


class DataError(TextcoderError):
    """An input table that cannot be read or lacks what coding needs."""


class ModelError(TextcoderError):
    """A local model that cannot be found or loaded."""


class BackendError(TextcoderError):
    """An engine or server that failed to answer.

    `status` is the HTTP status (None when there was none), `retry_after` the seconds the
    server asked to wait, `transient` marks a timeout or a dropped connection: what the
    runner needs to decide whether to retry.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.transient = transient


class RequestError(BackendError):
    """A request the engine refused as invalid; retrying it would fail the same way."""


class UsageError(TextcoderError):
    """Options or arguments that do not fit together."""
