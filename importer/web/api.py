"""The JSON API (/api/v1): personal API tokens (Bearer), the token owner's organizations and members.

Errors are {"error": {"code", "message"}} with a fitting status (the app's one handler).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from importer.accounts.api_tokens import token_owner
from importer.accounts.audit import Acting, Channel
from importer.accounts.listing import MAX_PAGE, list_members
from importer.accounts.members import MemberEdit, NewMember, add_member, edit_member
from importer.values import Status, UserType
from importer.web.answers import WebError
from importer.web.portal import Id, portal_of
from importer.web.sessions import Viewer, memberships

ERROR_SCHEMA: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        "required": ["code", "message"],
                    }
                },
                "required": ["error"],
            }
        }
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": "An error", **ERROR_SCHEMA} for status in (400, 401, 403, 404, 409, 413, 422, 429)
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)


def api_viewer(request: Request) -> Viewer:
    """The token owner: `Authorization: Bearer TOKEN`, else 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    portal = portal_of(request)
    owner = token_owner(portal.engine, token) if scheme.lower() == "bearer" and token.strip() else None
    if owner is None:
        raise WebError(
            401,
            "unauthorized",
            "Give a live API token as `Authorization: Bearer TOKEN` (the Settings page makes one).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with Session(portal.engine) as session:
        return Viewer(owner.account_id, owner.email, memberships(session, owner.account_id))


def admin_org(viewer: Viewer, org_id: Id) -> str:
    """The organization's reference for the library calls: 404 when the token owner is not in it,
    403 for a Member."""
    membership = viewer.membership(org_id)
    if membership is None:
        raise WebError(404, "not_found", f"No organization {org_id} among this token's organizations.")
    if not membership.admin:
        raise WebError(403, "forbidden", "Only an Owner or Admin of this organization may use its API.")
    return str(org_id)


def _acting(viewer: Viewer) -> Acting:
    return Acting(viewer.email, Channel.ACCOUNT)


class OrgOut(BaseModel):
    """One organization of the token owner."""

    id: int
    name: str
    role: str


class MemberIn(BaseModel):
    """A member to add, as a sheet row would give it."""

    name: str = Field(max_length=1000)
    email: str | None = Field(default=None, max_length=1000)
    role: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=1000)
    portal: bool = True
    pin: str | None = Field(default=None, max_length=100)


class MemberPatch(BaseModel):
    """What to change; absent fields stay as they are."""

    name: str | None = Field(default=None, max_length=1000)
    email: str | None = Field(default=None, max_length=1000)
    role: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=1000)


Owner = Annotated[Viewer, Depends(api_viewer)]


@router.get("/orgs", response_model=list[OrgOut])
def orgs(viewer: Owner) -> list[OrgOut]:
    """The token owner's organizations."""
    return [OrgOut(id=m.organization_id, name=m.organization, role=m.role.value) for m in viewer.memberships]


@router.get("/orgs/{org_id}/members")
def members(
    request: Request,
    viewer: Owner,
    org_id: Id,
    status: Status | None = None,
    type: UserType | None = None,
    team: Annotated[str | None, Query(max_length=400)] = None,
    batch: Annotated[str | None, Query(max_length=100)] = None,
    search: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Members by id, filtered, a page at a time: `{"members": [...], "next"}` (pass `next` as `after`)."""
    org_ref = admin_org(viewer, org_id)
    engine = portal_of(request).engine
    page = list_members(
        engine,
        org_ref,
        status=status,
        user_type=type,
        team=team,
        batch=batch,
        search=search,
        limit=limit,
        after=after,
    )
    return page.to_dict()


@router.post("/orgs/{org_id}/members", status_code=201)
def add(request: Request, viewer: Owner, org_id: Id, body: MemberIn) -> dict[str, Any]:
    """Add one member with the sheet's rules (422 with the sheet's errors when refused)."""
    org_ref = admin_org(viewer, org_id)
    change = add_member(
        portal_of(request).engine,
        org_ref,
        acting=_acting(viewer),
        member=NewMember(body.name, body.email, body.role, body.team, body.portal, body.pin),
    )
    if change.refused:
        raise WebError(422, "invalid_member", "; ".join(e.message for e in change.errors))
    result = change.to_dict()
    if change.pin:
        result["pin"] = change.pin  # shown this once
    return result


@router.patch("/orgs/{org_id}/members/{member_id}")
def patch(request: Request, viewer: Owner, org_id: Id, member_id: Id, body: MemberPatch) -> dict[str, Any]:
    """Edit one member (name, email of a pending member, role, team)."""
    org_ref = admin_org(viewer, org_id)
    change = edit_member(
        portal_of(request).engine,
        org_ref,
        member_id,
        acting=_acting(viewer),
        edit=MemberEdit(body.name, body.email, body.role, body.team),
    )
    if change.refused:
        raise WebError(422, "invalid_member", "; ".join(e.message for e in change.errors))
    return change.to_dict()
