"""A loopback stand-in for OpenAI's Chat Completions endpoint that fails by plan.

OpenAI itself cannot run here, so this speaks its wire format (answers validated against
the `openai` package's own `ChatCompletion` type, errors in OpenAI's error shape) and fails
exactly as told: 429 with Retry-After, 500, 400, a dropped connection, an answer slower than
the client's timeout. Every request is logged, so tests can check what was sent how often.

    with FlakyServer(plan={"row 3": ["429", "500", "ok"]}) as server:
        ... --base-url server.url ...
        server.answered("row 3")   # how many successful answers that text got

`hold_after=K` answers the first K requests and holds every later one in flight until
`release()`: a run cannot finish, and what it has sent and received is known exactly. The
action `hold` does the same for one planned attempt (held until `release()`, then `ok`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai.types.chat import ChatCompletion

#: actions: ok, 429, 500, 503, 400, drop (close without answering), slow (answer late),
#: html (a 200 whose body is a proxy's HTML page), nochoices (a 200 completion with no choices),
#: hold (held in flight until `release()`, then answered as ok)
ACTIONS = ("ok", "429", "500", "503", "400", "drop", "slow", "html", "nochoices", "hold")


@dataclass
class Logged:
    """One request as the server saw it."""

    key: str
    action: str
    answered: bool
    phase: int
    started: float


class _Reusable(ThreadingHTTPServer):
    """Binds a port a stopped server just left (a server that comes back on its port)."""

    allow_reuse_address = True


class FlakyServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) answering `POST /v1/chat/completions`.

    `plan` maps a substring of the last message to the actions of its successive attempts
    (then `ok`); `default` is every other request's action. `delay` seconds pass before
    each answer; `slow` answers wait `slow_seconds`. `labels` are what it answers: each text
    gets one label (by hash), with top_logprobs over all of them.
    """

    def __init__(
        self,
        plan: dict[str, Sequence[str]] | None = None,
        *,
        default: str = "ok",
        labels: Sequence[str] = ("positive", "negative", "neutral"),
        retry_after: float | None = 0.1,
        delay: float = 0.0,
        slow_seconds: float = 3.0,
        plan_fn: Callable[[str, int], str] | None = None,
        validate: bool = True,
        refuse_logprobs: bool = False,
        port: int = 0,
        models: Sequence[str] | None = None,
        any_route: bool = False,
        hold_after: int | None = None,
    ) -> None:
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.default = default
        self.labels = list(labels)
        self.retry_after = retry_after
        self.delay = delay
        self.slow_seconds = slow_seconds
        self.plan_fn = plan_fn
        self.validate = validate
        #: answer 400 to any request asking for logprobs, as some providers and models do
        self.refuse_logprobs = refuse_logprobs
        self.phase = 1
        self.log: list[Logged] = []
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        #: what `GET /v1/models` lists (None: an answer with no list, as some servers give)
        self.models = list(models) if models is not None else None
        #: answer a chat completion on every POST route, as some gateways do (no 404s)
        self.any_route = any_route
        #: killed: every connection still open is dropped at its next request
        self.dead = False
        #: requests answered (counted from the first) before every later one is held; None: none
        self.hold_after = hold_after
        #: set by `release()` for the requests held until then; stopped: held ones are dropped
        self._gate = threading.Event()
        self._stopped = False
        self._httpd = _Reusable(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> FlakyServer:
        self._thread.start()
        self.wait_ready()
        return self

    def wait_ready(self, deadline_s: float = 10.0) -> None:
        """Poll GET /health until it answers (no sleeping on faith)."""
        end = time.monotonic() + deadline_s
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/health")
                ok = conn.getresponse().status == 200
                conn.close()
                if ok:
                    return
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("the flaky server did not come up")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopped = True
        self._gate.set()  # held requests end, unanswered
        self._httpd.shutdown()
        self._httpd.server_close()

    def release(self) -> None:
        """Answer the requests held so far; later ones past `hold_after` are held again."""
        with self._lock:
            gate, self._gate = self._gate, threading.Event()
        gate.set()

    def kill(self) -> None:
        """Stop as a killed process would: open keep-alive connections are dropped too."""
        self.dead = True
        self.stop()

    def __enter__(self) -> FlakyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what happened ---------------------------------------------------------------------------

    def answered(self, substring: str, phase: int | None = None) -> int:
        """How many successful answers went out for requests whose key contains `substring`."""
        with self._lock:
            return sum(
                1
                for e in self.log
                if e.answered and substring in e.key and (phase is None or e.phase == phase)
            )

    def answers_by_key(self, phase: int | None = None) -> Counter[str]:
        with self._lock:
            return Counter(
                e.key for e in self.log if e.answered and (phase is None or e.phase == phase)
            )

    def requests(self, phase: int | None = None) -> list[Logged]:
        with self._lock:
            return [e for e in self.log if phase is None or e.phase == phase]

    # answering -------------------------------------------------------------------------------

    def choose(self, key: str) -> str:
        with self._lock:
            attempt = self.attempts[key]
            self.attempts[key] += 1
        if self.plan_fn is not None:
            return self.plan_fn(key, attempt)
        for sub, actions in self.plan.items():
            if sub in key:
                return actions[attempt] if attempt < len(actions) else "ok"
        return self.default

    def completion(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        """A ChatCompletion with logprobs, shaped exactly as OpenAI sends it."""
        digest = hashlib.sha256(key.encode()).digest()
        chosen = self.labels[digest[0] % len(self.labels)]
        others = [lab for lab in self.labels if lab != chosen]
        top = [(chosen, -0.2)] + [(lab, -2.0 - i) for i, lab in enumerate(others)]
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
        data: dict[str, Any] = {
            "id": f"chatcmpl-{digest.hex()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "system_fingerprint": "fp_flaky",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": chosen, "refusal": None},
                    "logprobs": {
                        "content": [
                            {
                                "token": chosen,
                                "logprob": -0.2,
                                "bytes": list(chosen.encode()),
                                "top_logprobs": [
                                    {"token": t, "logprob": lp, "bytes": list(t.encode())}
                                    for t, lp in top[: int(body.get("top_logprobs") or 0)]
                                ],
                            }
                        ],
                        "refusal": None,
                    }
                    if body.get("logprobs")
                    else None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 1,
                "total_tokens": prompt_tokens + 1,
            },
        }
        if self.validate:
            ChatCompletion.model_validate(data)
        return data


def _error(message: str, kind: str, code: str | None = None) -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}
    ).encode()


def _handler(server: FlakyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models" and server.models is not None:
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                        for m in server.models]  # fmt: skip
                self._send(200, json.dumps({"object": "list", "data": data}).encode())
            elif self.path.rstrip("/") in ("/health", "/v1/models"):
                self._send(200, b'{"status":"ok"}')
            else:
                self._send(404, _error("not found", "invalid_request_error"))

        def do_POST(self) -> None:
            if server.dead:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.endswith("/chat/completions") and not server.any_route:
                self._send(404, _error("not found", "invalid_request_error"))
                return
            messages = body.get("messages") or [{}]
            key = str(messages[-1].get("content", ""))
            action = server.choose(key)
            entry = Logged(key, action, False, server.phase, time.monotonic())
            with server._lock:
                limit = server.hold_after
                past = limit is not None and len(server.log) >= limit
                held = server._gate if past or action == "hold" else None
                server.log.append(entry)
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                if held is not None:
                    held.wait()
                if held is not None and server._stopped:  # never answered
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._act(action, body, key, entry)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _act(self, action: str, body: dict[str, Any], key: str, entry: Logged) -> None:
            retry = {}
            if server.retry_after is not None:
                retry = {"Retry-After": f"{server.retry_after:g}"}
            if server.refuse_logprobs and (body.get("logprobs") or body.get("top_logprobs")):
                self._send(
                    400,
                    _error("logprobs are not supported with this model", "invalid_request_error"),
                )
                return
            if action == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if server.delay:
                time.sleep(server.delay)
            if server.dead:  # killed while answering: the answer never leaves
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if action == "429":
                self._send(
                    429, _error("Rate limit reached", "requests", "rate_limit_exceeded"), retry
                )
            elif action in ("500", "503"):
                self._send(int(action), _error("The server had an error", "server_error"), retry)
            elif action == "400":
                self._send(400, _error("Invalid 'messages'", "invalid_request_error"))
            elif action == "html":
                self._send(200, b"<html><body>Gateway says hello</body></html>")
            elif action == "nochoices":
                self._send(
                    200, json.dumps({**server.completion(body, key), "choices": []}).encode()
                )
            else:
                if action == "slow":
                    time.sleep(server.slow_seconds)
                payload = json.dumps(server.completion(body, key)).encode()
                self._send(200, payload)
                # a slow answer comes after the client gave up: it never counts as answered
                entry.answered = action != "slow"

    return Handler
