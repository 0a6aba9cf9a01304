"""What every route does before its own work: the API key, the body size, the model's name,
and noticing a client that hangs up while its answer is computed."""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Sequence

from fastapi import Request

from .errors import APIError


def authorize(request: Request, api_key: str | None) -> None:
    """401 unless the request carries `Authorization: Bearer <api_key>` (when one is set)."""
    if api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if not header:
        raise APIError(
            401,
            "You didn't provide an API key: send it as 'Authorization: Bearer KEY'",
            code="invalid_api_key",
        )
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), api_key.encode()
    ):
        raise APIError(401, "Incorrect API key provided", code="invalid_api_key")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than the server's limit of {limit} bytes "
        "(textcoder serve --max-request-bytes)",
        code="request_too_large",
    )


def check_model(name: str, served: Sequence[str]) -> None:
    """404 for a model id this server does not serve."""
    if name not in served:
        raise unknown_model(name, served)


def unknown_model(name: str, served: Sequence[str]) -> APIError:
    return APIError(
        404,
        f"The model {name!r} does not exist; this server serves {', '.join(served)}",
        param="model",
        code="model_not_found",
    )


async def watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Set `cancel` when the client hangs up (the body has been read: the next ASGI message
    is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


class DisconnectWatch:
    """`async with DisconnectWatch(request) as cancel:` a flag set if the client goes away."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.cancel = threading.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> threading.Event:
        self._task = asyncio.create_task(watch_disconnect(self.request, self.cancel))
        return self.cancel

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
