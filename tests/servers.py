"""A real `textcoder serve` subprocess on a free 127.0.0.1 port, for tests that need a server.

    with ServeProcess("--api-key", "k") as server:
        OpenAI(base_url=server.url, api_key="k")

Readiness is polled on /health with a deadline (no sleeping on a guess); the process is
stopped (SIGTERM, then SIGKILL) on exit. `serve_url` in conftest.py shares one per session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`python -m textcoder serve ARGS --port P` running until the `with` block ends."""

    def __init__(self, *args: str, startup_timeout: float = 120.0) -> None:
        self.args = list(args)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.gettempdir()) / f"textcoder-serve-{self.port}.log"

    def start(self) -> ServeProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("OMP_NUM_THREADS", "2")
        log = self._log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "textcoder", "serve", "--port", str(self.port), *self.args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.output()
                self.stop()
                raise RuntimeError(f"textcoder serve exited early:\n{log}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling interval, not a wait for readiness
        log = self.output()
        self.stop()
        raise RuntimeError(f"textcoder serve not healthy in {self.startup_timeout} s:\n{log}")

    def output(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
