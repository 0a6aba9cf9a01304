"""A TCP proxy on 127.0.0.1 standing in for a slow link: bytes from the server to the client
are held while the gate is closed and go through once it opens, so a test decides exactly
when an answer arrives (no sleeping, no timing assumptions)."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class GatedProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target` until the `with` block ends."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.gate = threading.Event()
        self.gate.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._conns: list[socket.socket] = []
        self._closed = False

    def hold(self) -> None:
        """Hold every answer from now on."""
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, gated: bool) -> None:
        try:
            while data := src.recv(65536):
                if gated:
                    self.gate.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> GatedProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        self.gate.set()
        self._listener.close()
        for s in self._conns:
            s.close()
