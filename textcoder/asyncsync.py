"""Running the async core from synchronous code (scripts, notebooks, the CLI)."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop, kept across calls: HTTP clients' pooled connections belong to
    one loop, so a Coder used call after call keeps its connections (and closes them cleanly)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = new_event_loop()
        _local.loop = loop
        atexit.register(_close, loop)  # kept for the process: closed as it ends, not leaked
    return loop


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close a kept loop (its async generators first)."""
    if loop.is_closed() or loop.is_running():
        return
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """asyncio's event loop (uvloop was measured slower with aiohttp here: bench/runner_overhead.py)."""
    return asyncio.new_event_loop()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, also inside Jupyter's running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _thread_loop().run_until_complete(_as_coro(make))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            loop = new_event_loop()
            try:
                box["value"] = loop.run_until_complete(_as_coro(make))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _as_coro(make: Callable[[], Awaitable[T]]) -> T:
    return await make()
