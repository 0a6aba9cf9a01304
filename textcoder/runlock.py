"""One live run per store: a second process on the same store stops before it sends anything.

The lock is an `flock` on `STORE.lock`, which the kernel releases when the process ends in
any way (SIGKILL included), so a lock left by a killed run never blocks the next one. The
file holds the owner's pid, for the message. Re-entrant within one process.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from ._exceptions import UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; runs are not guarded
    fcntl = None  # type: ignore[assignment]

#: this process's held locks: lock path -> (file descriptor, holders)
_HELD: dict[str, tuple[int, int]] = {}


class RunLock:
    """Held while a run uses the store at `store` (a context manager); `what` the path is
    (a run also locks its output). The lock sits beside the resolved path, so a symlink or
    another spelling of the same file meets the same lock."""

    def __init__(self, store: str | Path, what: str = "store") -> None:
        self.store = Path(store)
        self.what = what
        resolved = self.store if str(store) == ":memory:" else self.store.resolve()
        self.path = str(resolved) + ".lock"

    def acquire(self) -> RunLock:
        """Take the lock, or raise `UsageError` naming the live process that holds it."""
        if fcntl is None or str(self.store) == ":memory:":
            return self
        if self.path in _HELD:
            fd, n = _HELD[self.path]
            _HELD[self.path] = (fd, n + 1)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(
                f"{self.store}: another textcoder run (pid {pid}) is using this {self.what}; "
                "wait for it to finish, or give this run another --store/-o"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _HELD[self.path] = (fd, 1)
        return self

    def release(self) -> None:
        """Let go (the last holder in this process unlocks)."""
        if self.path not in _HELD:
            return
        fd, n = _HELD.pop(self.path)
        if n > 1:
            _HELD[self.path] = (fd, n - 1)
            return
        os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
