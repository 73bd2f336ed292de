"""The portal's application: middleware, the one error handler, the routers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_csrf_protect import CsrfProtect
from fastapi_csrf_protect.exceptions import CsrfProtectError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from importer.errors import ImporterError
from importer.web.answers import Answer, WebError, answer_for
from importer.web.config import MAX_FORM_BYTES, WebConfig
from importer.web.middleware import UPLOAD_PATHS, BodyLimit, BodyTooLarge, SecurityHeaders
from importer.web.portal import CSRF_COOKIE, CSRF_FIELD, Portal, SignInRequired, current_viewer, portal_of

if TYPE_CHECKING:
    from importer.jobs import Queue

STATIC = Path(__file__).parent / "static"
# Multipart framing and the form's other fields, on top of the file itself.
UPLOAD_OVERHEAD = 64 * 1024
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 413: "limit_exceeded", 422: "invalid",
                 429: "too_many_attempts"}  # fmt: skip


async def csrf_required(request: Request) -> None:
    """Every state-changing portal request carries a valid CSRF token, or is refused (403) unchanged."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        await request.form()  # parsed once and cached: the check below reads the parsed form
    else:
        raise WebError(403, "csrf", "This form has expired or did not come from this site; reload the page.")
    try:
        await CsrfProtect().validate_csrf(request)
    except CsrfProtectError as exc:
        raise WebError(
            403, "csrf", "This form has expired or did not come from this site; reload the page."
        ) from exc


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def create_app(engine: Engine, config: WebConfig, *, queue: Queue | None = None) -> FastAPI:
    """The portal, the members' pages and the API on one database; `queue` wakes the workers for the
    jobs its pages and the API submit (without one, the workers find them by polling)."""
    from importer.web import (
        api,
        api_jobs,
        pages_account,
        pages_activate,
        pages_admin,
        pages_batches,
        pages_import,
        pages_members,
    )

    @CsrfProtect.load_config
    def _csrf_config() -> list[tuple[str, object]]:
        return [
            ("secret_key", config.secret_key),
            ("token_location", "body"),
            ("token_key", CSRF_FIELD),
            ("cookie_key", CSRF_COOKIE),
            ("cookie_samesite", "lax"),
            ("cookie_secure", config.https),
            ("max_age", config.session_idle_seconds),
        ]

    app = FastAPI(
        title="Member importer",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # its page loads scripts from another origin
        redoc_url=None,
    )
    app.state.portal = Portal(engine, config, queue=queue)
    max_upload = config.settings.max_file_bytes + UPLOAD_OVERHEAD

    def limit_for(path: str) -> tuple[str, int]:
        if UPLOAD_PATHS.match(path):
            return "max_file_bytes", max_upload
        return "max_form_bytes", MAX_FORM_BYTES

    app.add_middleware(BodyLimit, limit_for=limit_for)
    app.add_middleware(SecurityHeaders)

    def respond(request: Request, answer: Answer) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(answer.to_dict(), status_code=answer.status, headers=answer.headers)
        portal = portal_of(request)
        viewer = current_viewer(request) if answer.status != 429 else None
        response = portal.render(
            request, "error.html", {"answer": answer}, status=answer.status, viewer=viewer
        )
        response.headers.update(answer.headers)
        return response

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if isinstance(exc, BodyTooLarge):
            answer = Answer(413, exc.code, exc.message, {"Connection": "close"})
        else:
            code = _STATUS_CODES.get(exc.status_code, "error")
            headers = dict(exc.headers or {})
            if exc.status_code == 405:  # every route of the path, not only the first that matched it
                headers["Allow"] = ", ".join(_allowed_methods(request))
            answer = Answer(exc.status_code, code, str(exc.detail), headers)
        return respond(request, answer)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return respond(request, Answer(422, "invalid", f"The request is not valid: {problems}.", {}))

    async def _answered(request: Request, exc: Exception) -> Response:
        # ImporterError, WebError and anything unexpected: the one mapping (answers.answer_for).
        return respond(request, answer_for(exc))

    app.add_exception_handler(ImporterError, _answered)
    app.add_exception_handler(WebError, _answered)
    app.add_exception_handler(Exception, _answered)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    portal_dependencies = [Depends(csrf_required)]
    app.include_router(pages_account.router, dependencies=portal_dependencies)
    app.include_router(pages_activate.router, dependencies=portal_dependencies)
    app.include_router(pages_members.router, dependencies=portal_dependencies)
    app.include_router(pages_admin.router, dependencies=portal_dependencies)
    app.include_router(pages_import.router, dependencies=portal_dependencies)
    app.include_router(pages_batches.router, dependencies=portal_dependencies)
    app.include_router(api.router)
    app.include_router(api_jobs.router)
    return app
