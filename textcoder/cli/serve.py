"""`textcoder serve`: OpenAI's Chat Completions, Responses and Completions APIs over a local
model, for any OpenAI client."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from .._exceptions import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="serve a local model over OpenAI's API (chat, responses, completions)"
    )
    p.add_argument("--model", "-m", help="a local model alias or GGUF path (default: smollm2)")
    p.add_argument(
        "--served-model-name",
        action="append",
        metavar="NAME",
        help="a model id clients use (repeat for several; default: the model's alias)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.add_argument("--n-ctx", type=int, help="context length (default: the model's, at most 8192)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for llama.cpp (default: all cores), shared by --parallel copies",
    )
    p.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="copies of the model answering requests at once (default 1); each busy copy "
        "gets an equal share of --threads",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=None,
        help="largest request body accepted (default 4 MiB; larger gets a 413)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=float,
        default=3.0,
        help="seconds requests in flight may finish after SIGTERM or Ctrl-C before they are "
        "cancelled (default 3)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.host not in LOOPBACK and not args.api_key:
        raise UsageError(
            f"refusing to bind {args.host} without --api-key: anyone who can reach it could "
            "use the server; add --api-key KEY, or bind 127.0.0.1"
        )
    import uvicorn

    from ..backends.llama import LocalEngine
    from ..backends.llama.selfcheck import checked_scorer
    from ..models import resolve_model
    from ..server import DEFAULT_MAX_BODY, ServerConfig, create_app

    info = resolve_model(args.model)
    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    threads = args.threads or os.cpu_count() or 1
    engines = [LocalEngine(info, n_ctx=args.n_ctx, n_threads=threads) for _ in range(args.parallel)]
    checked_scorer(engines[0])  # refuses a llama-cpp-python build that scores wrongly
    names = args.served_model_name or [info.name]
    config = ServerConfig(
        served_names=names,
        api_key=args.api_key,
        max_body_bytes=args.max_request_bytes or DEFAULT_MAX_BODY,
        threads=threads if args.parallel > 1 else None,
        shutdown_grace=args.shutdown_grace,
    )
    app = create_app(engines, config)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"textcoder serve: {info.name} ({info.path.name}) as {', '.join(names)} "
        f"on http://{host}:{args.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(0.1, args.shutdown_grace),
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()  # SIGTERM, Ctrl-C: grace for requests in flight, then they are cancelled
    if not app.state.server.pool.close(timeout=1.0):
        os._exit(130)  # an engine is still inside llama.cpp: do not tear the model down under it
    return 0
