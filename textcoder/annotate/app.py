"""The annotation web app (FastAPI): each coder's page, the admin page, the export.

Pages are rendered on the server (Jinja2, autoescaped) with one small script and one
stylesheet that textcoder serves itself; the Content-Security-Policy forbids anything else.
A request is allowed by its token (from `?token=`, then a cookie scoped to that page's path),
compared in constant time with every known token; a coder's token opens that coder's pages
and nothing else, so no coder can see the model's codes or another coder's. A POST must
also come from the app's own page (see `security`).
"""

from __future__ import annotations

import hmac
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from .forms import FormError, Posted, parse_body, posted, resolution
from .pages import render
from .project import Annotation
from .security import (
    CSRF_FIELD,
    HEADERS,
    Refused,
    check_form_token,
    check_form_type,
    check_origin,
    form_token,
    read_limited,
)
from .store import DONE, SKIPPED, Save
from .summary import MIN_TEXTS, LiveSummary, Summary, summarise

COOKIE = "textcoder_token"
PAGE_WAIT = 5.0  # seconds the admin page waits for fresh figures, else shows the last ones
JSON_WAIT = 120.0
STATIC = {"annotate.js": "text/javascript", "annotate.css": "text/css"}


class Forbidden(Exception):
    """The request's token does not open this page."""


def identity(project: Annotation, request: Request) -> str | None:
    """Whose token the request carries (a coder's name, '' for the admin), or None."""
    token = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
    found = None
    for who, known in project.tokens.items():  # no early exit: constant time in the match
        if hmac.compare_digest(token.encode(), known.encode()):
            found = who
    return found


def require(project: Annotation, request: Request, who: str) -> None:
    if identity(project, request) != who:
        raise Forbidden


def create_app(project: Annotation) -> FastAPI:
    """The app over one annotation project."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.project = project

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        try:
            check_origin(request)
        except Refused as exc:
            return PlainTextResponse(f"{exc.status}: {exc}", exc.status, headers=HEADERS)
        response: Response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return PlainTextResponse(f"{exc.status}: {exc}", exc.status)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        # answered outside the middleware above, so the headers are set here
        return PlainTextResponse("500: internal error", 500, headers=HEADERS)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return PlainTextResponse("403: this link's token does not open this page", 403)

    @app.exception_handler(FormError)
    async def bad_form(request: Request, exc: FormError) -> Response:
        return PlainTextResponse(f"400: {exc}", 400)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return PlainTextResponse("404: not found", 404)
        body = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(body, media_type=STATIC[name])

    _coder_routes(app, project)
    _admin_routes(app, project)
    return app


def _enter(request: Request, path: str) -> Response | None:
    """A visit with `?token=`: reload without it, so it leaves the address bar (the browser's
    history may still hold the link). A token that opened the page (`require` ran first) is
    kept in a cookie for this page's path; an empty one leaves the cookie as it is."""
    token = request.query_params.get("token")
    if token is None:
        return None
    response = RedirectResponse(request.url.path, status_code=303)
    if token:
        response.set_cookie(
            COOKIE, token, max_age=90 * 86400, path=path, httponly=True, samesite="lax"
        )
    return response


def _coder_routes(app: FastAPI, project: Annotation) -> None:
    @app.get("/coder/{name}")
    def coder_home(name: str, request: Request) -> Response:
        require(project, request, name)
        entered = _enter(request, f"/coder/{name}")
        if entered is not None:
            return entered
        pos = first_open(project, name, 0)
        if pos is None:
            return HTMLResponse(render("done.html", done_context(project, name)))
        return RedirectResponse(f"/coder/{name}/{pos}", status_code=303)

    @app.get("/coder/{name}/{pos}")
    def coder_page(name: str, pos: int, request: Request, missing: int = 0) -> Response:
        require(project, request, name)
        entered = _enter(request, f"/coder/{name}")
        if entered is not None:
            return entered
        if not 1 <= pos <= len(project.assignment[name]):
            return PlainTextResponse("404: no such text", 404)
        return HTMLResponse(render("coder.html", page_context(project, name, pos, bool(missing))))

    @app.post("/coder/{name}/{pos}")
    async def coder_post(name: str, pos: int, request: Request) -> Response:
        require(project, request, name)
        order = project.assignment[name]
        if not 1 <= pos <= len(order):
            return PlainTextResponse("404: no such text", 404)
        form = posted(project.book, await page_form(request, project.tokens[name]))
        if form.item != order[pos - 1]:
            return PlainTextResponse("409: the page is out of date; reload it", 409)
        return await run_in_threadpool(commit, project, name, pos, form)


async def page_form(request: Request, session: str) -> dict[str, list[str]]:
    """The fields of a form posted by the page of `session` (a coder's or the admin's token):
    the page's content type, within the size limit, with the page's form token."""
    check_form_type(request)
    fields = parse_body(await read_limited(request))
    check_form_token(session, fields.get(CSRF_FIELD, [""])[0])
    return fields


def commit(project: Annotation, name: str, pos: int, form: Posted) -> Response:
    """Save one POST (before answering), then send the coder where the action leads."""
    store, item = project.store, form.item
    status = None
    if form.action == "next":
        have = {**store.codes_of(name, item), **form.codes}
        if any(v.name not in have for v in project.book.variables if not v.multi):
            store.save(name, item, Save(form.codes, form.note, form.unsure))
            return RedirectResponse(f"/coder/{name}/{pos}?missing=1", status_code=303)
        status = DONE
    elif form.action == "skip" and store.state_of(name, item).status != DONE:
        status = SKIPPED
    store.save(name, item, Save(form.codes, form.note, form.unsure, status))
    if form.action == "save":
        return Response(status_code=204)
    if form.action == "back":
        return RedirectResponse(f"/coder/{name}/{max(1, pos - 1)}", status_code=303)
    nxt = first_open(project, name, pos)
    return RedirectResponse(f"/coder/{name}" + (f"/{nxt}" if nxt else ""), status_code=303)


def first_open(project: Annotation, name: str, after: int) -> int | None:
    """The position (1-based) of the coder's first text neither coded nor skipped, looking
    after `after` first and then from the start; None when there is none."""
    order = project.assignment[name]
    statuses = project.store.statuses(name)
    positions: list[int] = [*range(after + 1, len(order) + 1), *range(1, after + 1)]
    for pos in positions:
        if statuses.get(order[pos - 1], "") == "":
            return pos
    return None


def page_context(project: Annotation, name: str, pos: int, missing: bool) -> dict[str, Any]:
    """What the coder's page shows for the text at `pos`: nothing but this coder's own codes."""
    book, store = project.book, project.store
    order = project.assignment[name]
    item = order[pos - 1]
    codes = store.codes_of(name, item)
    state = store.state_of(name, item)
    statuses = store.statuses(name)
    variables = []
    for var in book.variables:
        chosen = set(codes.get(var.name, "").split(";")) if var.multi else {codes.get(var.name)}
        kind = "multi" if var.multi else var.scale
        cats = [
            {
                "label": c.label,
                "description": c.description,
                "key": i + 1 if i < 9 else None,
                "checked": c.label in chosen,
            }
            for i, c in enumerate(var.categories)
        ]
        variables.append(
            {"name": var.name, "kind": kind, "instructions": var.instructions, "categories": cats}
        )
    return {
        "book": book,
        "coder": name,
        "pos": pos,
        "total": len(order),
        "done": sum(statuses.get(i) == DONE for i in order),
        "item": item,
        "text": project.sample.text(item),
        "variables": variables,
        "note": state.note,
        "unsure": state.unsure,
        "status": state.status,
        "single": len(book.variables) == 1 and not book.variables[0].multi,
        "missing": missing,
        "csrf": form_token(project.tokens[name]),
    }


def done_context(project: Annotation, name: str) -> dict[str, Any]:
    order = project.assignment[name]
    statuses = project.store.statuses(name)
    skipped = [i + 1 for i, item in enumerate(order) if statuses.get(item) == SKIPPED]
    return {"book": project.book, "coder": name, "total": len(order), "skipped": skipped}


def admin_context(
    project: Annotation, summary: Summary | None, fresh: bool, error: str | None
) -> dict[str, Any]:
    """What the admin page shows; figures on fewer than MIN_TEXTS texts are greyed out."""
    return {
        "book": project.book,
        "s": summary,
        "fresh": fresh,
        "error": error,
        "min_texts": MIN_TEXTS,
        "csrf": form_token(project.tokens[""]),
        "one_category": {v.name: v.labels for v in project.book.variables if not v.multi},
        "few": lambda n: " few" if n < MIN_TEXTS else "",
    }


def _admin_routes(app: FastAPI, project: Annotation) -> None:
    def compute() -> Summary:
        return summarise(
            project.book,
            project.sample,
            project.store,
            project.assignment,
            resamples=project.resamples,
            seed=project.seed,
        )

    live = LiveSummary(compute, project.store.version)

    @app.get("/admin")
    def admin(request: Request) -> Response:
        require(project, request, "")
        entered = _enter(request, "/admin")
        if entered is not None:
            return entered
        summary, fresh = live.get(wait=PAGE_WAIT)
        context = admin_context(project, summary, fresh, live.error)
        return HTMLResponse(render("admin.html", context))

    @app.post("/admin/resolve")
    async def resolve(request: Request) -> Response:
        require(project, request, "")
        fields = await page_form(request, project.tokens[""])
        item, variable, code = resolution(project.book, project.sample, fields)
        await run_in_threadpool(project.store.resolve, item, variable, code)
        return RedirectResponse("/admin#disagreements", status_code=303)

    @app.get("/admin/export.csv")
    def export_csv(request: Request) -> Response:
        require(project, request, "")
        from .export import export_frame, for_spreadsheet

        frame = export_frame(project.book, project.sample, project.store)
        frame = for_spreadsheet(frame, project.book, project.sample, project.store.coders())
        return Response(
            frame.to_csv(index=False),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="codes.csv"'},
        )

    @app.get("/admin/summary.json")
    def summary_json(request: Request) -> Response:
        require(project, request, "")
        summary, fresh = live.get(wait=JSON_WAIT)
        if summary is None:
            return JSONResponse({"error": live.error or "still computing"}, 503)
        return JSONResponse({**asdict(summary), "fresh": fresh})
