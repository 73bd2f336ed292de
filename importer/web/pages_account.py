"""Signing in and out, the landing page, the organization switcher and the members' own page (/me)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from importer.accounts.accounts import authenticate, set_password
from importer.addresses import email_key
from importer.errors import ActivationError
from importer.web.passwords import password_problems
from importer.web.portal import CSRF_COOKIE, client_address, current_viewer, portal_of, signed_in
from importer.web.sessions import SESSION_COOKIE, Viewer, end_session, start_session

router = APIRouter()
SIGN_IN_FAILED = "The email or password is not right."


def landing(viewer: Viewer) -> str:
    """Where an account lands: its first organization's members (Owner/Admin), else its own page."""
    admin_of = viewer.admin_of
    return f"/orgs/{admin_of[0].organization_id}/members" if admin_of else "/me"


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    """The landing page of the signed-in account, or the sign-in page."""
    viewer = current_viewer(request)
    return RedirectResponse(landing(viewer) if viewer else "/login", status_code=303)


@router.get("/login", include_in_schema=False)
def login_page(request: Request) -> Response:
    """The sign-in form."""
    viewer = current_viewer(request)
    if viewer is not None:
        return RedirectResponse(landing(viewer), status_code=303)
    return portal_of(request).render(
        request,
        "login.html",
        {"error": None, "email": "", "activated": request.query_params.get("activated") == "1"},
    )


@router.post("/login", include_in_schema=False)
def login(request: Request, email: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
    """Sign in: the same answer for an unknown address and a wrong password; limited and audited."""
    portal = portal_of(request)
    config = portal.config
    portal.limits.hit(config.sign_in_per_address, "sign-in-address", client_address(request))
    portal.limits.hit(config.sign_in_per_account, "sign-in-account", email_key(email.strip()[:320]))
    with Session(portal.engine) as session, session.begin():
        account = authenticate(session, email=email, password=password)
    if account is None:
        return portal.render(
            request, "login.html", {"error": SIGN_IN_FAILED, "email": email, "activated": False}, status=401
        )
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        end_session(portal.engine, old)
    token = start_session(portal.engine, account_id=account.id)
    viewer = current_viewer_for(request, token)
    response = RedirectResponse(landing(viewer) if viewer else "/me", status_code=303)
    response.delete_cookie(CSRF_COOKIE, path="/")  # a new CSRF token with the new session
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=config.https,
        path="/",
    )
    return response


def current_viewer_for(request: Request, token: str) -> Viewer | None:
    """The account of a session just started (its cookie is not on this request yet)."""
    from importer.web.sessions import viewer_of

    portal = portal_of(request)
    return viewer_of(portal.engine, token, idle_seconds=portal.config.session_idle_seconds)


@router.post("/logout", include_in_schema=False)
def logout(request: Request) -> Response:
    """Sign out: the session is forgotten on the server and the cookie cleared."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        end_session(portal_of(request).engine, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/orgs", include_in_schema=False)
def switch_organization(request: Request, org: int | None = None) -> Response:
    """The organization switcher: to the chosen organization's members (or the account's own page)."""
    viewer = signed_in(request)
    chosen = viewer.membership(org) if org is not None else None
    if chosen is not None and chosen.admin:
        return RedirectResponse(f"/orgs/{chosen.organization_id}/members", status_code=303)
    return RedirectResponse(landing(viewer) if chosen is None else "/me", status_code=303)


@router.get("/me", include_in_schema=False)
def me(request: Request) -> Response:
    """The account's own page: its memberships and the change-password form."""
    viewer = signed_in(request)
    return portal_of(request).render(request, "me.html", {"problems": [], "done": False}, viewer=viewer)


@router.post("/me/password", include_in_schema=False)
def change_password(
    request: Request,
    current_password: Annotated[str, Form()],
    new_password: Annotated[str, Form()],
    confirm_password: Annotated[str, Form()],
) -> Response:
    """Change the password: the current one first, then every rule of every organization."""
    viewer = signed_in(request)
    portal = portal_of(request)
    portal.limits.hit(portal.config.sign_in_per_account, "sign-in-account", email_key(viewer.email))
    current, new = current_password, new_password
    problems = password_problems(new, confirm=confirm_password, email=viewer.email)
    with Session(portal.engine) as session, session.begin():
        if authenticate(session, email=viewer.email, password=current) is None:
            problems.insert(0, "the current password is not right")
    if not problems:
        try:
            with Session(portal.engine) as session, session.begin():
                set_password(session, email=viewer.email, password=new)
        except ActivationError as exc:
            problems.append(str(exc))
    status = 422 if problems else 200
    return portal.render(
        request, "me.html", {"problems": problems, "done": not problems}, viewer=viewer, status=status
    )
