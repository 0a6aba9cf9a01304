"""What every response and every state-changing request of the annotation app must satisfy:
the security headers, proof that a POST came from the app's own page (the browser's
`Sec-Fetch-Site` or `Origin`, and a per-coder form token), the one content type the page
sends, and a body read no further than its limit.

Another app on another port of 127.0.0.1 is the same *site* to the browser (ports do not
separate sites, so SameSite cookies travel), hence the origin check and the form token.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin (not no-referrer): Chrome sends `Origin: null` on a same-origin form post
    # under no-referrer, which the origin check would refuse
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE = "application/x-www-form-urlencoded"  # what the page's forms and fetches send
MAX_BODY = 256 * 1024
CSRF_FIELD = "csrf"


class Refused(Exception):
    """A request refused before it reaches a route; `status` and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def check_origin(request: Request) -> None:
    """Refuse (403) a state-changing request a browser sent from another origin: by
    `Sec-Fetch-Site` where the browser sends it, else by `Origin` against `Host`. A request
    with neither header is no browser's (it still needs the form token)."""
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise Refused(403, f"a request from another site ({site}) cannot change codes")
        return
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Refused(403, f"a request from another origin ({origin}) cannot change codes")


def check_form_type(request: Request) -> None:
    """Refuse (415) any body but the URL-encoded form the page sends."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise Refused(415, f"send the form as {FORM_TYPE}, not {kind or 'no content type'}")


def form_token(session: str) -> str:
    """The form token of one coder's session (their URL token): an HMAC of it, so a page of
    another origin, which cannot read the coder's page, cannot know it."""
    return hmac.new(session.encode(), b"textcoder-annotate-form", hashlib.sha256).hexdigest()


def check_form_token(session: str, given: str | None) -> None:
    if given is None or not hmac.compare_digest(given.encode(), form_token(session).encode()):
        raise Refused(403, "the form's token is missing or wrong; reload the page")


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes: by its
    `Content-Length`, else while it streams in, so a huge chunked body is never held."""
    too_big = Refused(413, f"a form holds at most {limit} bytes")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big
    return bytes(body)
