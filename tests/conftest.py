"""Shared fixtures: the embedded model loaded once per session, the example codebook."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from textcoder import Codebook

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def wait_for(
    condition: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[str] | None = None,
    log: Path | None = None,
    deadline_s: float = 60.0,
) -> None:
    """Poll `condition()` until it holds: a stand-in's or a process's state decides, and the
    deadline is a safety net, never what a test asserts. With `proc`, the process ending
    first fails the wait, with its stderr (or `log`, the file that takes it)."""
    end = time.monotonic() + deadline_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            output = log.read_text() if log is not None else proc.communicate()[1]
            raise AssertionError(f"{what}: the process exited {proc.returncode}: {output}")
        if time.monotonic() > end:
            shown = f": {log.read_text()}" if log is not None else ""
            raise AssertionError(f"timed out waiting for {what} ({deadline_s:g} s){shown}")
        time.sleep(0.02)


def textcoder(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m textcoder ARGS` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "textcoder", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="session")
def local_backend():  # type: ignore[no-untyped-def]
    """The embedded SmolLM2 model, loaded once for every test that needs it."""
    from textcoder.backends.local import LocalBackend

    return LocalBackend()


@pytest.fixture(scope="session")
def sentiment_book() -> Codebook:
    return Codebook.from_yaml(EXAMPLES / "sentiment.yaml")


@pytest.fixture(scope="session")
def serve_url():  # type: ignore[no-untyped-def]
    """A real `textcoder serve` on 127.0.0.1 for the session (model ids smollm2 and gpt-4o)."""
    from .servers import ServeProcess

    names = ("--served-model-name", "smollm2", "--served-model-name", "gpt-4o")
    with ServeProcess(*names, "--threads", "1") as s:  # 1 thread: robust on a shared CPU
        yield s.url
