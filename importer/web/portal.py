"""What every route shares: the engine, the settings, the templates, the rate limits, who is signed in."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, Any

import jinja2
from fastapi import Path, Request
from fastapi.responses import HTMLResponse
from fastapi_csrf_protect import CsrfProtect
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy import Engine

from importer.web.answers import WebError
from importer.web.config import WebConfig
from importer.web.ratelimit import RateLimits
from importer.web.sessions import SESSION_COOKIE, Membership, Viewer, viewer_of

if TYPE_CHECKING:
    from importer.jobs import Queue

TEMPLATES = FilePath(__file__).parent / "templates"
CSRF_FIELD = "csrf_token"
CSRF_COOKIE = "importer_csrf"
CSRF_SALT = "fastapi-csrf-token"  # fastapi-csrf-protect's signing salt


# Ids in paths fit the database's integers: a bigger one is a 422, never a database error.
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


class SignInRequired(Exception):
    """The page needs a signed-in account: the answer is a redirect to /login."""


class Portal:
    """The app's state (app.state.portal)."""

    def __init__(self, engine: Engine, config: WebConfig, queue: Queue | None = None) -> None:
        self.engine = engine
        self.config = config
        self.queue = queue
        self.limits = RateLimits(config.rate_limit_storage)
        self.jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,  # every user text is escaped
            undefined=jinja2.StrictUndefined,
        )

    def wake(self, job_id: int) -> None:
        """Tell the workers a job waits (without a queue they find it by polling the job table)."""
        if self.queue is not None:
            self.queue.wake(job_id)

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any] | None = None,
        *,
        status: int = 200,
        viewer: Viewer | None = None,
        org: Membership | None = None,
    ) -> HTMLResponse:
        """A page whose forms carry the CSRF token of the browser's signed cookie (made when missing)."""
        csrf = CsrfProtect()
        token = self._csrf_token_of(request)
        signed = None
        if token is None:
            token, signed = csrf.generate_csrf_tokens()
        body = self.jinja.get_template(template).render(
            {
                "csrf_field": CSRF_FIELD,
                "csrf_token": token,
                "viewer": viewer,
                "org": org,
                "request_path": request.url.path,
                **(context or {}),
            }
        )
        response = HTMLResponse(body, status_code=status)
        if signed is not None:
            csrf.set_csrf_cookie(signed, response)
        return response

    def _csrf_token_of(self, request: Request) -> str | None:
        # The token the browser's cookie already signs: reused, so that a second tab, or a page's
        # own 404 for its favicon, does not make the forms of the first one stale.
        signed = request.cookies.get(CSRF_COOKIE)
        if not signed:
            return None
        serializer = URLSafeTimedSerializer(self.config.secret_key, salt=CSRF_SALT)
        try:
            token = serializer.loads(signed, max_age=self.config.session_idle_seconds)
        except BadData:
            return None
        return token if isinstance(token, str) else None


def portal_of(request: Request) -> Portal:
    """The Portal of the app serving this request."""
    portal: Portal = request.app.state.portal
    return portal


def client_address(request: Request) -> str:
    """The client's address (the socket's peer: forwarded headers are not trusted)."""
    return request.client.host if request.client else "unknown"


def current_viewer(request: Request) -> Viewer | None:
    """The signed-in account, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    portal = portal_of(request)
    return viewer_of(portal.engine, token, idle_seconds=portal.config.session_idle_seconds)


def signed_in(request: Request) -> Viewer:
    """The signed-in account; pages without one redirect to /login."""
    viewer = current_viewer(request)
    if viewer is None:
        raise SignInRequired()
    return viewer


def admin_membership(viewer: Viewer, org_id: int) -> Membership:
    """The viewer's Owner/Admin membership of the organization: 404 when not a member, 403 for a Member."""
    membership = viewer.membership(org_id)
    if membership is None:
        raise WebError(404, "not_found", "No such organization.")
    if not membership.admin:
        raise WebError(403, "forbidden", "Only an Owner or Admin of this organization may open this page.")
    return membership
