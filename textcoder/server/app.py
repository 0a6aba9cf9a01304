"""The FastAPI app: OpenAI's Chat Completions, Responses, legacy Completions and Models routes,
and vLLM's `/tokenize`, over local engines.

Requests are validated on the event loop, then run one at a time on each engine copy in the
pool's worker threads (a FIFO queue: many clients are all served, none gets an error).
Every response body is built as plain JSON and validated against the `openai` package's own
types before it is sent. On shutdown (SIGTERM, Ctrl-C) uvicorn gives requests in flight
`shutdown_grace` seconds, then cancels them; the pool then stops every engine at its next token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from openai.types import Model
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._exceptions import RequestError
from ..backends.llama import LocalEngine
from .chat import chat_completions
from .completions import completions, tokenize
from .errors import APIError, as_api_error
from .http import authorize, check_model
from .responses import responses
from .state import DEFAULT_MAX_BODY, ServerConfig, ServerState

__all__ = ["DEFAULT_MAX_BODY", "ServerConfig", "create_app"]


def create_app(engines: LocalEngine | Sequence[LocalEngine], config: ServerConfig) -> FastAPI:
    """The app serving `engines` (copies of one model) under the ids in `config.served_names`."""
    state = ServerState([engines] if isinstance(engines, LocalEngine) else engines, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.pool.close(timeout=config.shutdown_grace)

    app = FastAPI(
        title="textcoder serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.server = state
    add_error_handlers(app)
    add_model_routes(app, state)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await chat_completions(request, state)

    @app.post("/v1/completions")
    async def legacy(request: Request) -> Response:
        return await completions(request, state)

    @app.post("/v1/responses")
    async def respond(request: Request) -> Response:
        return await responses(request, state)

    @app.post("/tokenize")
    async def tokens(request: Request) -> Response:
        return await tokenize(request, state)

    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error in OpenAI's envelope: ours, refused requests, routes, and the unexpected."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> Response:
        return as_api_error(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        msg = (
            f"no route {request.method} {request.url.path}"
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return APIError(exc.status_code, msg, code=code).response()

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        return APIError(500, f"internal error: {exc}", type="server_error").response()


def add_model_routes(app: FastAPI, state: ServerState) -> None:
    """`GET /health`, `GET /v1/models` and `GET /v1/models/{id}`."""

    def card(name: str) -> dict[str, Any]:
        body = {"id": name, "object": "model", "created": state.created, "owned_by": "textcoder"}
        body["max_model_len"] = state.engine.n_ctx  # vLLM's field: what a client may send
        Model.model_validate(body)
        return body

    @app.get("/health")
    async def health() -> dict[str, Any]:
        pool = state.pool
        return {"status": "ok", "models": state.names, "engines": len(pool.engines),
                "engines_busy": pool.busy}  # fmt: skip

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request, state.config.api_key)
        return {"object": "list", "data": [card(n) for n in state.names]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request, state.config.api_key)
        check_model(model_id, state.names)
        return card(model_id)
