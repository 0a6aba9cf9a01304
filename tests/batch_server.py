"""A loopback stand-in for OpenAI's Files and Batches endpoints (and Chat Completions).

OpenAI's Batch API cannot run here, so this speaks its wire format to the unchanged `openai`
client: `POST /v1/files` (multipart, `purpose=batch`), `POST /v1/batches`,
`GET /v1/batches/{id}`, `GET /v1/batches`, `POST /v1/batches/{id}/cancel`,
`GET /v1/files/{id}/content`; every object it returns is validated against the client's own
types. A batch moves one state per poll (`validating` -> `in_progress` -> `finalizing` ->
`completed`, or `expired`), not per second, so tests need no sleeps; `hold` keeps batches in
`in_progress` until a test lets them go. Output lines come back shuffled; `plan` puts some
requests in the error file or expires them, by attempt:

    with BatchServer(plan={"<r003>": ["error"], "<r005>": ["expire"]}) as server:
        ... --base-url server.url --batch ...
        server.paid          # Counter: how many times each custom_id was answered (billed)

Validation mirrors OpenAI's: unique custom_ids, `method` POST, `url` equal to the endpoint,
one model a file; a file that breaks them makes the batch `failed` with `errors`.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion

ENDPOINT = "/v1/chat/completions"


def completion(
    body: dict[str, Any], labels: Sequence[str], validate: bool = True
) -> dict[str, Any]:
    """A ChatCompletion as OpenAI sends it: each choice a label fixed by the last message
    (and the choice's index), with top_logprobs over all labels when asked."""
    key = str((body.get("messages") or [{}])[-1].get("content", ""))
    choices = []
    for i in range(int(body.get("n") or 1)):
        digest = hashlib.sha256(f"{key}#{i}".encode() if i else key.encode()).digest()
        chosen = labels[digest[0] % len(labels)]
        others = [lab for lab in labels if lab != chosen]
        top = [(chosen, -0.2)] + [(lab, -2.0 - j) for j, lab in enumerate(others)]
        logprobs = None
        if body.get("logprobs"):
            alts = [
                {"token": t, "logprob": lp, "bytes": list(t.encode())}
                for t, lp in top[: int(body.get("top_logprobs") or 0)]
            ]
            token = {"token": chosen, "logprob": -0.2, "bytes": list(chosen.encode())}
            logprobs = {"content": [{**token, "top_logprobs": alts}], "refusal": None}
        choices.append(
            {
                "index": i,
                "message": {"role": "assistant", "content": chosen, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        )
    prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
    data: dict[str, Any] = {
        "id": "chatcmpl-" + hashlib.sha256(key.encode()).hexdigest()[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o-mini"),
        "system_fingerprint": "fp_batch",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(choices),
            "total_tokens": prompt_tokens + len(choices),
        },
    }
    if validate:
        ChatCompletion.model_validate(data)
    return data


@dataclass
class _Batch:
    """One batch's state on the stand-in."""

    id: str
    input_file_id: str
    metadata: dict[str, str]
    created_at: int
    status: str = "validating"
    polls: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    times: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        counts = {"total": len(self.lines), "completed": self.completed, "failed": self.failed}
        data: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "expires_at": self.created_at + 86400,
            "request_counts": counts,
            "metadata": self.metadata,
            **self.times,
        }
        Batch.model_validate(data)
        return data


class BatchServer:
    """A threaded HTTP server on 127.0.0.1 (a free port) speaking the Files/Batches API.

    `plan` maps a substring of a request's last message to its fate in successive batches
    (`ok`, `error`: a 400 line in the error file, `expire`: left unrun when its batch expires;
    then `ok`). `labels` are what it answers with.
    """

    def __init__(
        self,
        plan: dict[str, Sequence[str]] | None = None,
        *,
        labels: Sequence[str] = ("positive", "negative", "neutral"),
        seed: int = 0,
    ) -> None:
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.labels = list(labels)
        self.rng = random.Random(seed)
        #: batches stay `in_progress` while this is set
        self.hold = threading.Event()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        #: successful answers per custom_id over all batches: what was paid
        self.paid: Counter[str] = Counter()
        #: how many batches each custom_id has been in
        self.attempts: Counter[str] = Counter()
        #: online chat completions answered, by last message
        self.online: Counter[str] = Counter()
        #: polls of each batch in `in_progress`
        self.polled_in_progress: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._n = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> BatchServer:
        self._thread.start()
        end = time.monotonic() + 10
        while True:  # poll /health with a deadline
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError("the batch stand-in did not come up")
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self.hold.clear()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}-{self._n:04d}{hashlib.sha256(str(self._n).encode()).hexdigest()[:8]}"

    # the API ---------------------------------------------------------------------------------

    def upload(self, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        if purpose != "batch":
            raise ValueError(f"purpose must be batch, not {purpose!r}")
        file_id = self._id("file")
        self.files[file_id] = data
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": "batch",
            "status": "processed",
        }
        FileObject.model_validate(obj)
        return obj

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("endpoint") != ENDPOINT or params.get("completion_window") != "24h":
            raise ValueError(f"bad batch parameters: {params}")
        data = self.files[params["input_file_id"]]
        batch = _Batch(
            self._id("batch"),
            params["input_file_id"],
            dict(params.get("metadata") or {}),
            int(time.time()),
        )
        batch.lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        batch.errors = _validate(batch.lines)
        with self._lock:
            self.batches[batch.id] = batch
        return batch.as_json()

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        """One poll: the batch moves on by one state (unless held in `in_progress`)."""
        with self._lock:
            b = self.batches[batch_id]
            b.polls += 1
            now = int(time.time())
            if b.status == "validating":
                if b.errors:
                    b.status, b.times["failed_at"] = "failed", now
                else:
                    b.status, b.times["in_progress_at"] = "in_progress", now
            elif b.status == "in_progress":
                self.polled_in_progress[batch_id] += 1
                if not self.hold.is_set():
                    self._run(b)
                    b.status, b.times["finalizing_at"] = "finalizing", now
            elif b.status == "finalizing":
                expired = any(line.get("_fate") == "expire" for line in b.lines)
                b.status = "expired" if expired else "completed"
                b.times["expired_at" if expired else "completed_at"] = now
            elif b.status == "cancelling":
                b.status, b.times["cancelled_at"] = "cancelled", now
            return b.as_json()

    def _run(self, b: _Batch) -> None:
        """Answer a batch's requests: the output and error files, lines shuffled."""
        out, err = [], []
        for line in b.lines:
            cid = line["custom_id"]
            self.attempts[cid] += 1
            fate = self._fate(line["body"], self.attempts[cid])
            line["_fate"] = fate
            rid = f"batch_req_{hashlib.sha256((b.id + cid).encode()).hexdigest()[:16]}"
            if fate == "ok":
                body = completion(line["body"], self.labels)
                self.paid[cid] += 1
                b.completed += 1
                resp = {"status_code": 200, "request_id": rid, "body": body}
                out.append({"id": rid, "custom_id": cid, "response": resp, "error": None})
            elif fate == "error":
                b.failed += 1
                error = {"message": "Invalid 'messages'", "type": "invalid_request_error"}
                resp = {"status_code": 400, "request_id": rid, "body": {"error": error}}
                err.append({"id": rid, "custom_id": cid, "response": resp, "error": None})
            else:
                b.failed += 1
                msg = "This request could not be executed before the completion window expired."
                error = {"code": "batch_expired", "message": msg}
                err.append({"id": rid, "custom_id": cid, "response": None, "error": error})
        self.rng.shuffle(out)
        self.rng.shuffle(err)
        for lines, attr in ((out, "output_file_id"), (err, "error_file_id")):
            if lines:
                file_id = self._id("file")
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines).encode()
                setattr(b, attr, file_id)

    def _fate(self, body: dict[str, Any], attempt: int) -> str:
        key = str((body.get("messages") or [{}])[-1].get("content", ""))
        for sub, fates in self.plan.items():
            if sub in key:
                return fates[attempt - 1] if attempt <= len(fates) else "ok"
        return "ok"

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            b = self.batches[batch_id]
            if b.status in ("validating", "in_progress", "finalizing"):
                b.status, b.times["cancelling_at"] = "cancelling", int(time.time())
            return b.as_json()

    def list_page(self, limit: int, after: str | None) -> dict[str, Any]:
        with self._lock:
            ids = sorted(self.batches, reverse=True)  # newest first, as OpenAI lists them
            if after is not None and after in ids:
                ids = ids[ids.index(after) + 1 :]
            page = ids[:limit]
            data = [self.batches[i].as_json() for i in page]
        return {
            "object": "list",
            "data": data,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
            "has_more": len(ids) > limit,
        }


def _validate(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI's checks on an input file, as `errors.data` entries."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models = set()
    for i, line in enumerate(lines, 1):
        cid = line.get("custom_id")
        if cid in seen:
            errors.append({"code": "duplicate_custom_id", "line": i, "message": f"{cid} repeats"})
        seen.add(str(cid))
        if line.get("method") != "POST" or line.get("url") != ENDPOINT:
            errors.append({"code": "invalid_url", "line": i, "message": "bad method or url"})
        models.add((line.get("body") or {}).get("model"))
    if len(models) > 1:
        errors.append({"code": "mixed_models", "line": None, "message": f"models {models}"})
    return errors


def _error(message: str, status: int = 400) -> tuple[int, bytes]:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return status, json.dumps(body).encode()


def _multipart(content_type: str, data: bytes) -> dict[str, tuple[str, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + data)
    out = {}
    for part in msg.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        filename = part.get_param("filename", header="content-disposition") or ""
        out[str(name)] = (str(filename), part.get_payload(decode=True) or b"")
    return out


def _handler(server: BatchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _json(self, obj: Any) -> None:
            self._send(200, json.dumps(obj).encode())

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            try:
                if url.path in ("/health", "/health/"):
                    self._json({"status": "ok"})
                elif parts == ["v1", "models"]:
                    model = {"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "x"}
                    self._json({"object": "list", "data": [model]})
                elif parts == ["v1", "batches"]:
                    q = parse_qs(url.query)
                    limit = int(q.get("limit", ["20"])[0])
                    self._json(server.list_page(limit, q.get("after", [None])[0]))
                elif len(parts) == 3 and parts[:2] == ["v1", "batches"]:
                    self._json(server.retrieve(parts[2]))
                elif len(parts) == 4 and parts[:2] == ["v1", "files"] and parts[3] == "content":
                    self._send(200, server.files[parts[2]], "application/octet-stream")
                else:
                    self._send(*_error("not found", 404))
            except KeyError as exc:
                self._send(*_error(f"no such object: {exc}", 404))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if parts == ["v1", "files"]:
                    fields = _multipart(self.headers["Content-Type"], data)
                    filename, content = fields["file"]
                    self._json(server.upload(filename, fields["purpose"][1].decode(), content))
                elif parts == ["v1", "batches"]:
                    self._json(server.create(json.loads(data)))
                elif len(parts) == 4 and parts[:2] == ["v1", "batches"] and parts[3] == "cancel":
                    self._json(server.cancel(parts[2]))
                elif parts == ["v1", "chat", "completions"]:
                    body = json.loads(data)
                    key = str((body.get("messages") or [{}])[-1].get("content", ""))
                    with server._lock:
                        server.online[key] += 1
                    self._json(completion(body, server.labels))
                else:
                    self._send(*_error("not found", 404))
            except (KeyError, ValueError) as exc:
                self._send(*_error(str(exc)))

    return Handler
