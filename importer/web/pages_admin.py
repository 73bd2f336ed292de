"""An organization's Teams, Audit and Settings pages (Owner/Admin), on the same library calls as the
CLI's `team ...`, `audit` and `api-token ...`; every change is audited by the library."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from importer.accounts.api_tokens import TokenView, create_token, list_tokens, revoke_token
from importer.accounts.audit import Acting, Channel, list_events
from importer.accounts.passwords import MIN_PASSWORD_LENGTH_RANGE, get_password_policy, set_password_policy
from importer.accounts.teams import TeamView, create_team, delete_team, list_teams, rename_team
from importer.errors import ImporterError
from importer.values import Role
from importer.web.answers import WebError, answer_for
from importer.web.portal import Id, admin_membership, portal_of, signed_in
from importer.web.sessions import Membership, Viewer

router = APIRouter()
AUDIT_PAGE_SIZE = 50
MAX_FIELD = 320  # an address's length: more than any filter needs
# A page that shows a secret once is never kept by the browser or a proxy.
NO_STORE = {"Cache-Control": "no-store"}


def _controls(text: str) -> bool:
    """Whether text holds control characters (no database column takes a NUL)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _acting(viewer: Viewer) -> Acting:
    return Acting(viewer.email, Channel.ACCOUNT)


def _admin(request: Request, org_id: int) -> tuple[Viewer, Membership]:
    viewer = signed_in(request)
    return viewer, admin_membership(viewer, org_id)


def _back(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


# --- teams ---


def _teams_page(
    request: Request,
    viewer: Viewer,
    org: Membership,
    *,
    notice: str = "",
    error: str = "",
    name: str = "",
    status: int = 200,
) -> Response:
    portal = portal_of(request)
    context = {
        "teams": list_teams(portal.engine, str(org.organization_id)),
        "notice": notice,
        "error": error,
        "name": name,
    }
    return portal.render(request, "teams.html", context, viewer=viewer, org=org, status=status)


def _team(request: Request, org_id: int, team_id: int) -> TeamView:
    """One of the organization's teams by id (404 for any other id, whatever organization it is of)."""
    found = next((t for t in list_teams(portal_of(request).engine, str(org_id)) if t.id == team_id), None)
    if found is None:
        raise WebError(404, "not_found", "No such team in this organization.")
    return found


@router.get("/orgs/{org_id}/teams", include_in_schema=False)
def teams_page(request: Request, org_id: Id, notice: str = "") -> Response:
    """The teams with their member counts; create, rename, delete."""
    viewer, org = _admin(request, org_id)
    return _teams_page(request, viewer, org, notice=notice)


@router.post("/orgs/{org_id}/teams", include_in_schema=False)
def team_create(request: Request, org_id: Id, name: Annotated[str, Form()] = "") -> Response:
    """`Create team`: a refused name is said on the page, the name kept in its field."""
    viewer, org = _admin(request, org_id)
    try:
        made = create_team(portal_of(request).engine, str(org_id), acting=_acting(viewer), name=name)
    except ImporterError as exc:
        answer = answer_for(exc)
        return _teams_page(request, viewer, org, error=answer.message, name=name, status=answer.status)
    return _back(f"/orgs/{org_id}/teams", f"Created team {made.name}.")


@router.post("/orgs/{org_id}/teams/{team_id}/rename", include_in_schema=False)
def team_rename(request: Request, org_id: Id, team_id: Id, new_name: Annotated[str, Form()] = "") -> Response:
    """`Rename`: the team keeps its members."""
    viewer, org = _admin(request, org_id)
    team = _team(request, org_id, team_id)
    try:
        done = rename_team(
            portal_of(request).engine, str(org_id), acting=_acting(viewer), team=team.name, new_name=new_name
        )
    except ImporterError as exc:
        answer = answer_for(exc)
        return _teams_page(request, viewer, org, error=answer.message, status=answer.status)
    return _back(f"/orgs/{org_id}/teams", f"Renamed team {team.name} to {done.name}.")


@router.get("/orgs/{org_id}/teams/{team_id}/delete", include_in_schema=False)
def team_delete_page(request: Request, org_id: Id, team_id: Id) -> Response:
    """`Delete`: asks for confirmation first (its members keep no team)."""
    viewer, org = _admin(request, org_id)
    team = _team(request, org_id, team_id)
    return portal_of(request).render(request, "team_delete.html", {"team": team}, viewer=viewer, org=org)


@router.post("/orgs/{org_id}/teams/{team_id}/delete", include_in_schema=False)
def team_delete(request: Request, org_id: Id, team_id: Id) -> Response:
    """The confirmed delete."""
    viewer, org = _admin(request, org_id)
    team = _team(request, org_id, team_id)
    try:
        moved = delete_team(portal_of(request).engine, str(org_id), acting=_acting(viewer), team=team.name)
    except ImporterError as exc:
        answer = answer_for(exc)
        return _teams_page(request, viewer, org, error=answer.message, status=answer.status)
    return _back(f"/orgs/{org_id}/teams", f"Deleted team {team.name}; {moved} member(s) now have no team.")


# --- audit ---


def _moment(text: str) -> dt.datetime:
    """An ISO date or time as `importer audit --since` reads it (UTC when no zone is given)."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except OverflowError as exc:  # past year 9999 once in UTC
        raise ValueError(text) from exc


@router.get("/orgs/{org_id}/audit", include_in_schema=False)
def audit_page(request: Request, org_id: Id, actor: str = "", since: str = "", before: str = "") -> Response:
    """The organization's audit events, newest first, filtered by actor and time, 50 a page."""
    viewer, org = _admin(request, org_id)
    portal = portal_of(request)
    actor, since = actor.strip()[:MAX_FIELD], since.strip()[:MAX_FIELD]
    error, moment = "", None
    if _controls(actor) or _controls(since):
        error = "The filters cannot hold control characters."
    elif since:
        try:
            moment = _moment(since)
        except ValueError:
            error = f"{since!r} is not a date or time such as 2025-01-31 or 2025-01-31T09:30Z."
    older = int(before) if before.isascii() and before.isdigit() and len(before) < 19 else None
    events = [] if error else list_events(
        portal.engine, str(org_id), since=moment, actor=actor or None, limit=AUDIT_PAGE_SIZE + 1, before=older
    )  # fmt: skip
    filters = {k: v for k, v in (("actor", actor), ("since", since)) if v}
    base = f"/orgs/{org_id}/audit"
    next_url = None
    if len(events) > AUDIT_PAGE_SIZE:
        events = events[:AUDIT_PAGE_SIZE]
        next_url = f"{base}?{urlencode(filters | {'before': str(events[-1].id)})}"
    context: dict[str, Any] = {
        "events": events,
        "actor": actor,
        "since": since,
        "error": error,
        "next_url": next_url,
        "newest_url": f"{base}?{urlencode(filters)}" if older is not None else None,
    }
    return portal.render(request, "audit.html", context, viewer=viewer, org=org)


# --- settings: the password policy and the viewer's API tokens ---


def _settings_page(
    request: Request,
    viewer: Viewer,
    org: Membership,
    *,
    notice: str = "",
    error: str = "",
    new_token: str | None = None,
    status: int = 200,
) -> Response:
    portal = portal_of(request)
    tokens: list[TokenView] = list_tokens(portal.engine, str(org.organization_id), email=viewer.email)
    low, high = MIN_PASSWORD_LENGTH_RANGE
    context = {
        "policy": get_password_policy(portal.engine, str(org.organization_id)),
        "owner": org.role is Role.OWNER,
        "low": low,
        "high": high,
        "tokens": tokens,
        "notice": notice,
        "error": error,
        "new_token": new_token,
    }
    response = portal.render(request, "settings.html", context, viewer=viewer, org=org, status=status)
    response.headers.update(NO_STORE)
    return response


@router.get("/orgs/{org_id}/settings", include_in_schema=False)
def settings_page(request: Request, org_id: Id, notice: str = "") -> Response:
    """The password policy (the Owner changes it; an Admin reads it) and the viewer's API tokens."""
    viewer, org = _admin(request, org_id)
    return _settings_page(request, viewer, org, notice=notice)


@router.post("/orgs/{org_id}/settings/policy", include_in_schema=False)
def policy_submit(
    request: Request,
    org_id: Id,
    min_length: Annotated[str, Form()] = "",
    require_symbol: Annotated[str, Form()] = "",
) -> Response:
    """`Save policy`: only the organization's Owner may."""
    viewer, org = _admin(request, org_id)
    if org.role is not Role.OWNER:
        raise WebError(
            403, "forbidden", "Only the Owner of this organization may change its password policy."
        )
    text = min_length.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 6:
        low, high = MIN_PASSWORD_LENGTH_RANGE
        message = f"The minimum length must be a whole number from {low} to {high}."
        return _settings_page(request, viewer, org, error=message, status=422)
    try:
        policy = set_password_policy(
            portal_of(request).engine,
            str(org_id),
            actor_email=viewer.email,
            min_length=int(text),
            require_symbol=bool(require_symbol),
            channel=Channel.ACCOUNT,
        )
    except ImporterError as exc:
        answer = answer_for(exc)
        return _settings_page(request, viewer, org, error=answer.message, status=answer.status)
    return _back(f"/orgs/{org_id}/settings", f"Password policy: {policy.describe()}.")


@router.post("/orgs/{org_id}/settings/tokens", include_in_schema=False)
def token_create(request: Request, org_id: Id, name: Annotated[str, Form()] = "") -> Response:
    """`Create token`: the token is shown on this answer only (stored hashed, never shown again)."""
    viewer, org = _admin(request, org_id)
    try:
        if _controls(name):
            raise ImporterError("a token's name cannot hold control characters.")
        made = create_token(portal_of(request).engine, str(org_id), email=viewer.email, name=name.strip())
    except ImporterError as exc:
        answer = answer_for(exc)
        return _settings_page(request, viewer, org, error=answer.message, status=answer.status)
    notice = f"Created API token {made.view.name or made.view.id}."
    return _settings_page(request, viewer, org, notice=notice, new_token=made.token)


@router.post("/orgs/{org_id}/settings/tokens/{token_id}/revoke", include_in_schema=False)
def token_revoke(request: Request, org_id: Id, token_id: Id) -> Response:
    """`Revoke`: one of the viewer's own tokens (any other id answers 404); it stops working at once."""
    viewer, _org = _admin(request, org_id)
    engine = portal_of(request).engine
    own = {t.id for t in list_tokens(engine, str(org_id), email=viewer.email)}
    if token_id not in own:
        raise WebError(404, "not_found", "No such API token of yours in this organization.")
    view = revoke_token(engine, str(org_id), token_id, email=viewer.email)
    return _back(f"/orgs/{org_id}/settings", f"Revoked API token {view.name or view.id}.")
