"""A loopback stand-in for the Hugging Face Hub, for the unchanged `huggingface_hub` client.

The Hub cannot be reached here, so this speaks the part of its wire format that
`HfApi.model_info(files_metadata=True)` and `hf_hub_download` use (huggingface_hub's
`hf_api.py` and `file_download.py`):

- `GET /api/models/{repo}[/revision/{rev}]` -> `{"id", "sha", "siblings": [{"rfilename",
  "size", "blobId", "lfs": {"size", "sha256", "pointerSize"}}]}`; an unknown repo is a 404
  with `X-Error-Code: RepoNotFound`, an unknown revision one with `RevisionNotFound`;
- `HEAD|GET /{repo}/resolve/{rev}/{path}`: a `.gguf` file is stored in LFS, so the answer is a
  302 to `/blobs/{sha256}` on another origin (the Hub's CDN: a second port here; the client
  does not follow it for metadata), with `X-Linked-Etag`, `X-Linked-Size` and
  `X-Repo-Commit`; any other file is answered in place (200, `ETag` = git blob id);
- `GET /blobs/{sha256}` on the CDN: the bytes, honouring `Range: bytes=N-` (206 + Content-Range).

No Xet headers are sent, so the client downloads over plain HTTP. `cut` makes the first GET
of a file stop after that many bytes and drop the connection (a network failure mid-file).
Every request is logged.

    with FakeHub({"owner/repo": {"m-Q4_K_M.gguf": path}}) as hub:
        env["HF_ENDPOINT"] = hub.url
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 16


@dataclass
class Served:
    """One request as the Hub saw it; `sent` counts the body bytes that went out."""

    method: str
    path: str
    range: str | None
    status: int
    sent: int = 0


@dataclass
class RepoFile:
    path: str
    source: Path
    size: int
    sha256: str
    git_sha1: str

    @property
    def lfs(self) -> bool:
        return self.path.endswith(".gguf")


def _digests(path: Path) -> tuple[str, str]:
    sha, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            git.update(chunk)
    return sha.hexdigest(), git.hexdigest()


class FakeHub:
    """A threaded HTTP server on a free 127.0.0.1 port serving `repos` (repo -> path -> file)."""

    def __init__(
        self,
        repos: dict[str, dict[str, Path]],
        *,
        cut: dict[str, int] | None = None,
        wrong_sha256: set[str] | None = None,
    ) -> None:
        self.repos: dict[str, dict[str, RepoFile]] = {}
        self.commits: dict[str, str] = {}
        for repo, files in repos.items():
            entries = {}
            for name, source in files.items():
                sha, git = _digests(source)
                entries[name] = RepoFile(name, source, source.stat().st_size, sha, git)
            self.repos[repo] = entries
            key = repo + "".join(f"{e.path}{e.sha256}" for e in entries.values())
            self.commits[repo] = hashlib.sha1(key.encode()).hexdigest()
        self.blobs = {f.sha256: f for files in self.repos.values() for f in files.values()}
        self.cut = dict(cut or {})  # file path -> bytes sent before the first GET drops
        self.wrong_sha256 = wrong_sha256 or set()  # files whose listing reports a wrong hash
        self.log: list[Served] = []
        self._lock = threading.Lock()
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), _handler(self)) for _ in "ab"]
        for server in self._servers:
            server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def __enter__(self) -> FakeHub:
        for server in self._servers:  # listening already: serve_forever only accepts
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def blob_gets(self, path: str | None = None) -> list[Served]:
        """The GETs of file contents (of one file, if `path` is given)."""
        with self._lock:
            shas = {f.sha256 for f in self.blobs.values() if path is None or f.path == path}
            return [
                e
                for e in self.log
                if e.method == "GET" and e.path.startswith("/blobs/") and e.path[7:] in shas
            ]

    def record(self, entry: Served) -> None:
        with self._lock:
            self.log.append(entry)

    # answers -------------------------------------------------------------------------------

    def info(self, repo: str) -> dict[str, Any]:
        siblings = []
        for f in self.repos[repo].values():
            sha = "0" * 64 if f.path in self.wrong_sha256 else f.sha256
            entry: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.git_sha1}
            if f.lfs:
                entry["lfs"] = {"size": f.size, "sha256": sha, "pointerSize": 134}
            siblings.append(entry)
        return {"id": repo, "modelId": repo, "sha": self.commits[repo], "siblings": siblings}


_API = re.compile(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/]+))?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self.route(body=False)

        def do_GET(self) -> None:
            self.route(body=True)

        def route(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if m := _API.match(path):
                return self.api(m.group(1), m.group(2) or "main")
            if m := _RESOLVE.match(path):
                return self.resolve(m.group(1), m.group(2), m.group(3), body)
            if path.startswith("/blobs/") and path[7:] in hub.blobs:
                return self.blob(hub.blobs[path[7:]], body)
            self.error(404, "EntryNotFound", "not found")

        def api(self, repo: str, revision: str) -> None:
            if repo not in hub.repos:
                return self.error(404, "RepoNotFound", "Repository not found")
            if revision not in ("main", hub.commits[repo]):
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            data = json.dumps(hub.info(repo)).encode()
            self.answer(200, {"Content-Type": "application/json"}, data)

        def resolve(self, repo: str, revision: str, name: str, body: bool) -> None:
            files = hub.repos.get(repo)
            if files is None:
                return self.error(404, "RepoNotFound", "Repository not found")
            if revision not in ("main", hub.commits[repo]):
                return self.error(404, "RevisionNotFound", "Invalid rev id")
            f = files.get(name)
            if f is None:
                return self.error(404, "EntryNotFound", "Entry not found", hub.commits[repo])
            headers = {"X-Repo-Commit": hub.commits[repo]}
            if f.lfs:
                headers |= {
                    "Location": f"{hub.cdn}/blobs/{f.sha256}",
                    "X-Linked-Etag": f'"{f.sha256}"',
                    "X-Linked-Size": str(f.size),
                    "ETag": f'"{f.git_sha1}"',
                }
                return self.answer(302, headers, b"")
            headers |= {"ETag": f'"{f.git_sha1}"', "Accept-Ranges": "bytes"}
            self.send_file(f, headers, body)

        def blob(self, f: RepoFile, body: bool) -> None:
            self.send_file(f, {"ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes"}, body)

        def send_file(self, f: RepoFile, headers: dict[str, str], body: bool) -> None:
            wanted = self.headers.get("Range")
            start = 0
            if wanted and (m := re.fullmatch(r"bytes=(\d+)-", wanted.strip())):
                start = int(m.group(1))
            status = 206 if start else 200
            if start:
                headers["Content-Range"] = f"bytes {start}-{f.size - 1}/{f.size}"
            entry = Served(self.command, urlsplit(self.path).path, wanted, status)
            hub.record(entry)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(f.size - start))
            self.end_headers()
            if not body:
                return
            limit = hub.cut.pop(f.path, None) if self.command == "GET" else None
            with f.source.open("rb") as src:
                src.seek(start)
                while chunk := src.read(CHUNK if limit is None else min(CHUNK, limit - entry.sent)):
                    self.wfile.write(chunk)
                    entry.sent += len(chunk)
                    if limit is not None and entry.sent >= limit:
                        break
            if limit is not None:  # drop the connection mid-file
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

        def answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            hub.record(Served(self.command, urlsplit(self.path).path, None, status, len(data)))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "Content-Type": "application/json"}
            if commit:
                headers["X-Repo-Commit"] = commit
            self.answer(status, headers, json.dumps({"error": message}).encode())

    return Handler
