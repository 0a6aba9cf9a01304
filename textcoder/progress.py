"""Progress of a run: a bar on a terminal, a plain line every few seconds elsewhere, or nothing.

Both show rows done (of the total when known), the rate, the time left, tokens and failures.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class _Counts(Protocol):
    rows: int
    failed: int
    prompt_tokens: int
    completion_tokens: int


class Progress:
    """Shows a run's counts (`stats`: a `RunStats`) as rows complete.

    `mode`: `auto` (a bar on a terminal, else lines), `bar`, `lines` or `off`.
    """

    def __init__(
        self,
        total: int | None,
        stats: _Counts,
        mode: str = "auto",
        interval: float = 5.0,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.stats = stats
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started
        self._bar: Any = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="row", desc="coding", file=self.stream, dynamic_ncols=True
            )

    def tick(self) -> None:
        """One more row is done (coded, failed, or found in the store)."""
        if self.mode == "off":
            return
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(1)
            if now - self._last >= 0.5:
                self._last = now
                self._bar.set_postfix_str(self._extras(), refresh=False)
        elif now - self._last >= self.interval:
            self._last = now
            print(self.line(now), file=self.stream, flush=True)

    def refresh(self) -> None:
        """Show the counts again though no row finished (a stall shows, not a frozen line)."""
        if self.mode == "off":
            return
        now = time.monotonic()
        if now - self._last < (0.5 if self._bar is not None else self.interval):
            return
        self._last = now
        if self._bar is not None:
            self._bar.set_postfix_str(self._extras(), refresh=True)
        else:
            print(self.line(now), file=self.stream, flush=True)

    def _extras(self) -> str:
        tokens = self.stats.prompt_tokens + self.stats.completion_tokens
        extra = f"{tokens:,} tokens"
        if self.stats.failed:
            extra += f", {self.stats.failed} failed"
        retries = getattr(self.stats, "retries", 0)
        if retries:
            extra += f", {retries:,} retries"
        retrying = getattr(self.stats, "retrying", 0)
        if retrying:
            extra += f", {retrying} stalled (waiting to retry)"
        if getattr(self.stats, "held", False):
            extra += ", new rows wait for the oldest unfinished row"
        return extra

    def line(self, now: float | None = None) -> str:
        """The plain progress line: rows, percent, rate, time left, tokens, failures."""
        now = time.monotonic() if now is None else now
        done = self.stats.rows
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if self.total:
            head = f"{done:,}/{self.total:,} rows ({100 * done / self.total:.0f}%)"
            left = (self.total - done) / rate if rate > 0 else float("inf")
            eta = f", ETA {_duration(left)}" if left != float("inf") else ""
        else:
            head, eta = f"{done:,} rows", ""
        return f"textcoder: {head}, {rate:.1f} rows/s{eta}, {self._extras()}"

    def note(self, message: str) -> None:
        """A message that should not garble the bar."""
        if self._bar is not None:
            self._bar.write(f"textcoder: {message}", file=self.stream)
        else:
            print(f"textcoder: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._extras(), refresh=False)
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
