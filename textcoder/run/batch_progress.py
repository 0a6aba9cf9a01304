"""Progress of batches being waited on, fed by their `request_counts`: a bar on a terminal,
a line on each change elsewhere (logs, CI), or nothing."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from ..batch_store import BatchRecord


def summary(batches: list[BatchRecord]) -> tuple[int, int, int, str]:
    """(done, failed, total, statuses) over batches, e.g. `2 in_progress, 1 completed`."""
    total = sum(b.total for b in batches)
    done = sum(b.completed + b.failed for b in batches)
    failed = sum(b.failed for b in batches)
    counts = Counter(b.status for b in batches)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return done, failed, total, statuses


class BatchProgress:
    """Shows completed / failed / total requests, the batches' statuses and the time waited.

    `mode`: `auto` (a bar on a terminal, else lines), `bar`, `lines` or `off`; `clock` is
    injectable so a test controls what "elapsed" says.
    """

    def __init__(
        self,
        mode: str = "auto",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode = mode
        self.clock = clock
        self.started = clock()
        self._last: tuple[int, int, int, str] | None = None
        self._bar: Any = None

    def update(self, batches: list[BatchRecord]) -> None:
        """The batches' latest state, after a poll."""
        if self.mode == "off":
            return
        done, failed, total, statuses = now = summary(batches)
        elapsed = _duration(self.clock() - self.started)
        extra = f"{statuses}, {failed:,} failed, waited {elapsed}"
        if self.mode == "bar":
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total,
                    desc="batch",
                    file=self.stream,
                    dynamic_ncols=True,
                    # tqdm's own rate and ETA would time the polls, not the batch
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} requests"
                    " [{postfix}]",
                )
            self._bar.total = total
            self._bar.n = done
            self._bar.set_postfix_str(extra, refresh=True)
        elif now != self._last:
            print(f"textcoder: batch: {done:,}/{total:,} requests, {extra}", file=self.stream)
        self._last = now

    def note(self, message: str) -> None:
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(f"textcoder: {message}", file=self.stream)
        else:
            print(f"textcoder: {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds) + 0.5)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
