"""Errors in OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`.

Statuses follow OpenAI's: 400 for anything wrong with the request (never 422, never a 500
for bad input, since the `openai` client silently retries 5xx), 401 for a key, 404 for an
unknown model or route, 413 for a body over the limit.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from .._exceptions import RequestError


class APIError(Exception):
    """An error to send to the client as OpenAI would."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"x-should-retry": "false"} if self.status < 500 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 invalid_request_error."""
    return APIError(400, message, param=param, code=code)


def unsupported(feature: str, param: str) -> APIError:
    """A 400 for an OpenAI feature this server does not offer."""
    return APIError(
        400,
        f"{feature} are not supported by textcoder serve (the embedded model answers text only)",
        param=param,
        code="unsupported_parameter",
    )


def as_api_error(exc: BaseException) -> APIError:
    """What the client sees of an error raised while answering: a refused request is a 400
    naming its field, anything else a 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RequestError):
        param = getattr(exc, "param", None) or "messages"
        return APIError(400, str(exc), param=param, code=getattr(exc, "code", None))
    return APIError(500, f"generation failed: {exc}", type="server_error")
