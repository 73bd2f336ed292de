"""The Members page of an organization: filters, keyset pages of 50, actions, Add member and Edit."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from importer import jobs
from importer.accounts.audit import Acting, Channel
from importer.accounts.listing import MemberPage, list_members
from importer.accounts.members import (
    MemberChange,
    MemberEdit,
    NewMember,
    add_member,
    deactivate_member,
    edit_member,
)
from importer.accounts.teams import list_teams
from importer.errors import ImporterError, NotFoundError
from importer.store.orgs import list_batches
from importer.values import Status, UserType
from importer.web.portal import Id, admin_membership, portal_of, signed_in
from importer.web.sessions import Membership, Viewer

router = APIRouter()
PAGE_SIZE = 50
FIELDS = ("name", "email", "role", "team", "pin")


def _acting(viewer: Viewer) -> Acting:
    return Acting(viewer.email, Channel.ACCOUNT)


class Filters:
    """The members page's filters, from its query string."""

    def __init__(self, status: str, type_: str, team: str, batch: str, search: str) -> None:
        self.status = status if status in {s.value for s in Status} else ""
        self.type = type_ if type_ in {t.value for t in UserType} else ""
        self.team, self.batch, self.search = team.strip(), batch.strip(), search.strip()

    def query(self) -> dict[str, str]:
        """The filters as query parameters (blank ones left out)."""
        pairs = {"status": self.status, "type": self.type, "team": self.team, "batch": self.batch}
        return {k: v for k, v in (pairs | {"search": self.search}).items() if v}

    def page(self, portal_engine: Any, org_id: Id, *, after: str | None, limit: int | None) -> MemberPage:
        """One page of the matching members (all of them when limit is None)."""
        return list_members(
            portal_engine,
            str(org_id),
            status=Status(self.status) if self.status else None,
            user_type=UserType(self.type) if self.type else None,
            team=self.team or None,
            batch=self.batch or None,
            search=self.search or None,
            limit=limit,
            after=after,
        )


def _filters(status: str = "", type: str = "", team: str = "", batch: str = "", search: str = "") -> Filters:
    return Filters(status, type, team, batch, search)


@router.get("/orgs/{org_id}/members", include_in_schema=False)
def members_page(
    request: Request,
    org_id: Id,
    status: str = "",
    type: str = "",
    team: str = "",
    batch: str = "",
    search: str = "",
    after: str = "",
    trail: str = "",
    notice: str = "",
) -> Response:
    """The members list: filters, a page of 50, Next and Previous (keyset: the trail of cursors)."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    portal = portal_of(request)
    filters = _filters(status, type, team, batch, search)
    error = ""
    try:
        page = filters.page(portal.engine, org_id, after=after or None, limit=PAGE_SIZE)
    except ImporterError as exc:  # an unknown team, a cursor not ours: said above an empty list
        error, page = str(exc), MemberPage((), None)
    cursors = [c for c in trail.split(",") if c] if trail else []
    base = f"/orgs/{org_id}/members?"
    next_url = (
        base + urlencode(filters.query() | {"after": page.next, "trail": ",".join([*cursors, after or "-"])})
        if page.next
        else None
    )
    previous_url = None
    if after:
        back = cursors[-1] if cursors else "-"
        query = filters.query() | {"trail": ",".join(cursors[:-1])}
        if back != "-":
            query["after"] = back
        previous_url = base + urlencode({k: v for k, v in query.items() if v})
    context = {
        "page": page,
        "filters": filters,
        "statuses": [s.value for s in Status],
        "types": [t.value for t in UserType],
        "teams": [t.name for t in list_teams(portal.engine, str(org_id))],
        "batches": [b.id for b in list_batches(portal.engine, str(org_id))],
        "next_url": next_url,
        "previous_url": previous_url,
        "error": error,
        "notice": notice,
        "filter_query": urlencode(filters.query()),
    }
    return portal.render(request, "members.html", context, viewer=viewer, org=org)


@router.post("/orgs/{org_id}/members/actions", include_in_schema=False)
async def member_actions(request: Request, org_id: Id) -> Response:
    """`Send activation emails`, `Resend invitation`, `Deactivate`: on the selected or all matching."""
    viewer = signed_in(request)
    admin_membership(viewer, org_id)
    form = await request.form()
    action = str(form.get("action", ""))
    scope = str(form.get("scope", "selected"))
    ids = [v for v in form.getlist("member") if isinstance(v, str)]
    selected = [int(v) for v in ids if v.isascii() and v.isdigit() and len(v) < 19]  # fits a BIGINT
    filters = Filters(*(str(form.get(k, "")) for k in ("status", "type", "team", "batch", "search")))
    from starlette.concurrency import run_in_threadpool

    notice = await run_in_threadpool(_act, request, viewer, org_id, action, scope, selected, filters)
    query = filters.query() | {"notice": notice}
    return RedirectResponse(f"/orgs/{org_id}/members?{urlencode(query)}", status_code=303)


def _act(
    request: Request,
    viewer: Viewer,
    org_id: Id,
    action: str,
    scope: str,
    selected: list[int],
    filters: Filters,
) -> str:
    engine = portal_of(request).engine
    if action not in ("send", "resend", "deactivate"):
        return "Choose an action."
    # A send reaches only pending portal members, so "all matching" with no team or search filter
    # is the batch (or the organization) as a whole: the job finds them, no list of ids is kept.
    whole = scope == "all" and not (filters.team or filters.search)
    if scope == "all" and not (whole and action in ("send", "resend")):
        selected = [m.id for m in filters.page(engine, org_id, after=None, limit=None).members]
    elif scope != "all" and not selected:
        return "Select members first, or choose all matching."
    if action in ("send", "resend"):
        job_id = jobs.submit_activations(
            engine,
            organization_id=org_id,
            actor=viewer.email,
            batch_id=filters.batch or None,
            resend=action == "resend",
            member_ids=None if whole else selected,
        )
        portal_of(request).wake(job_id)
        return "Sending in the background: the Status column shows each member's invitation."
    done, refused = 0, []
    for member_id in selected:
        try:
            deactivate_member(engine, str(org_id), member_id, acting=_acting(viewer))
            done += 1
        except NotFoundError:
            continue  # another organization's id: as if it did not exist
        except ImporterError as exc:
            refused.append(str(exc))
    return f"Deactivated {done} member(s)." + (" " + " ".join(refused[:5]) if refused else "")


def _errors_by_field(change: MemberChange) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for error in change.errors:
        column = error.column.lower()
        field = next((f for f in FIELDS if f in column), "name")
        found.setdefault(field, []).append(error.message)
    return found


def _member_form(
    request: Request,
    viewer: Viewer,
    org: Membership,
    *,
    values: dict[str, str],
    errors: dict[str, list[str]],
    editing: int | None,
    status: int = 200,
    pin: str | None = None,
) -> Response:
    portal = portal_of(request)
    context = {
        "values": values,
        "errors": errors,
        "editing": editing,
        "teams": [t.name for t in list_teams(portal.engine, str(org.organization_id))],
        "pin": pin,
    }
    return portal.render(request, "member_form.html", context, viewer=viewer, org=org, status=status)


@router.get("/orgs/{org_id}/members/new", include_in_schema=False)
def new_member_page(request: Request, org_id: Id) -> Response:
    """The `Add member` form."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    values = {"name": "", "email": "", "role": "Member", "team": "", "portal": "yes", "pin": ""}
    return _member_form(request, viewer, org, values=values, errors={}, editing=None)


@router.post("/orgs/{org_id}/members/new", include_in_schema=False)
def add_member_submit(
    request: Request,
    org_id: Id,
    name: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    team: Annotated[str, Form()] = "",
    portal: Annotated[str, Form()] = "yes",
    pin: Annotated[str, Form()] = "",
) -> Response:
    """Add one member with the sheet's rules; errors beside their fields in the sheet's words."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    has_portal = portal != "no"
    values = {"name": name, "email": email, "role": role, "team": team, "portal": portal, "pin": pin}
    new = NewMember(
        name=name,
        email=email if has_portal else None,
        role=role if has_portal else None,
        team=team,
        portal=has_portal,
        pin=None if has_portal else pin,
    )
    change = add_member(portal_of(request).engine, str(org_id), acting=_acting(viewer), member=new)
    if change.refused:
        return _member_form(
            request, viewer, org, values=values, errors=_errors_by_field(change), editing=None, status=422
        )
    if change.pin:  # shown this once, to the admin who added the member
        return _member_form(request, viewer, org, values=values, errors={}, editing=None, pin=change.pin)
    shown = change.member.shown if change.member else name
    return RedirectResponse(
        f"/orgs/{org_id}/members?{urlencode({'notice': f'Added {shown}.'})}", status_code=303
    )


@router.get("/orgs/{org_id}/members/{member_id}/edit", include_in_schema=False)
def edit_member_page(request: Request, org_id: Id, member_id: Id) -> Response:
    """The Edit form of one member (404 for another organization's id)."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    member = _member(request, org_id, member_id)
    values = {
        "name": member.name,
        "email": member.email or "",
        "role": member.role.value,
        "team": member.team or "",
        "portal": "yes" if member.user_type is UserType.PORTAL else "no",
        "pin": "",
    }
    return _member_form(request, viewer, org, values=values, errors={}, editing=member_id)


def _member(request: Request, org_id: Id, member_id: Id) -> Any:
    from sqlalchemy.orm import Session

    from importer.store.models import Member, Team
    from importer.store.orgs import member_record

    with Session(portal_of(request).engine) as session:
        row = session.get(Member, member_id)
        if row is None or row.organization_id != org_id:
            raise NotFoundError("No such member in this organization.")
        team = session.get(Team, row.team_id) if row.team_id is not None else None
        return member_record(row, team.name if team else None)


@router.post("/orgs/{org_id}/members/{member_id}/edit", include_in_schema=False)
def edit_member_submit(
    request: Request,
    org_id: Id,
    member_id: Id,
    name: Annotated[str, Form()] = "",
    email: Annotated[str | None, Form()] = None,
    role: Annotated[str | None, Form()] = None,
    team: Annotated[str, Form()] = "",
) -> Response:
    """Save an edit with the sheet's rules and the privilege rules."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    member = _member(request, org_id, member_id)
    edit = MemberEdit(name=name, email=email, role=role, team=team)
    change = edit_member(portal_of(request).engine, str(org_id), member_id, acting=_acting(viewer), edit=edit)
    if change.refused:
        values = {
            "name": name,
            "email": email or "",
            "role": role or "",
            "team": team,
            "portal": "yes" if member.user_type is UserType.PORTAL else "no",
            "pin": "",
        }
        return _member_form(
            request,
            viewer,
            org,
            values=values,
            errors=_errors_by_field(change),
            editing=member_id,
            status=422,
        )
    return RedirectResponse(
        f"/orgs/{org_id}/members?{urlencode({'notice': f'Saved {member.shown}.'})}", status_code=303
    )
