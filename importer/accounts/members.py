"""Managing members one at a time, with the sheet's own rules and messages (one rule, one message).

A member to add or an edit is checked as a one-row sheet by the same Validator an import uses, so
a bad address, an unknown team or a role the actor may not give is refused with exactly the
sheet's code and sentence. Each change writes its audit event in its own transaction.

Over 400 lines because every action (add, edit, deactivate, reactivate, remove, new PIN) runs in
the one checking session below (the actor's privileges, the last Owner, the one-row sheet): cut
apart, each half would need the other's private rules.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, record
from importer.addresses import email_key
from importer.cells import trim
from importer.checks.pins import PIN_DIGITS, hash_pin
from importer.checks.rules import RuleContext, Team, Validator
from importer.errors import ConflictError, ImporterError, NotFoundError, PermissionDeniedError, Remedy
from importer.records import MemberRecord
from importer.sheets import SheetSpec, load_sheet
from importer.store.models import (
    Account,
    ActivationToken,
    AuditAction,
    Member,
    Organization,
    Role,
    Status,
    utcnow,
)
from importer.store.models import Team as TeamRow
from importer.store.orgs import find_actor, find_organization, member_record
from importer.values import Actor, ErrorCode, RowError, UserType

# The row number a single member's errors carry: it is checked as row 1 of a one-row sheet.
SINGLE_ROW = 1


@dataclass(frozen=True, slots=True)
class NewMember:
    """One member to add, as the cells of a sheet row would give it."""

    name: str
    email: str | None = None
    role: str | None = None
    team: str | None = None
    portal: bool = True
    pin: str | None = None  # No Portal Access only; generated when None or blank


@dataclass(frozen=True, slots=True)
class MemberEdit:
    """What to change; None leaves a field as it is, a blank team means no team."""

    name: str | None = None
    email: str | None = None
    role: str | None = None
    team: str | None = None


@dataclass(frozen=True, slots=True)
class MemberChange:
    """The outcome of adding or editing one member: the member, or the sheet's errors that refused it.

    `pin` is a No Portal Access member's PIN, returned this once; `invitation` says the address
    already has an account (the email is an invitation to accept, not an activation).
    """

    member: MemberRecord | None
    errors: tuple[RowError, ...] = ()
    pin: str | None = None
    invitation: bool = False
    changed: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """Whether the sheet's rules refused it (nothing was written)."""
        return bool(self.errors)

    @property
    def exit_code(self) -> int:
        """3 when refused, as an import with rejected rows; else 0."""
        return 3 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        """As `member add|edit --json` prints it (the PIN is printed apart, once)."""
        return {
            "member": self.member.to_dict() if self.member else None,
            "errors": [
                {"column": e.column, "code": e.code.value, "message": e.message, "value": e.value}
                for e in self.errors
            ],
            "invitation": self.invitation,
            "changed": list(self.changed),
        }


@dataclass(frozen=True, slots=True)
class NewPin:
    """A No Portal Access member's new PIN, shown once to the admin who asked; stored only hashed."""

    member: MemberRecord
    pin: str


def _clean(value: str | None) -> str:
    """A cell as the reader makes it: trimmed, NFC."""
    return unicodedata.normalize("NFC", trim(value)) if value else ""


def _new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


class _Scope:
    """One management operation: the organization (locked for the transaction), the actor, the rules."""

    def __init__(self, session: Session, org_ref: str, acting: Acting) -> None:
        self.session = session
        org = find_organization(session, org_ref)
        # Serializes management of one organization (the last-Owner rule reads, then writes).
        session.execute(select(Organization.id).where(Organization.id == org.id).with_for_update())
        self.org = org
        self.acting = acting
        self.actor: Actor = find_actor(session, org, acting.email)
        teams = session.scalars(select(TeamRow).where(TeamRow.organization_id == org.id))
        self.context = RuleContext(
            actor=self.actor, teams={t.name_key: Team(id=t.id, name=t.name) for t in teams}
        )

    def validator(self, spec: SheetSpec, keys: list[str]) -> Validator:
        return Validator(spec, self.context, headers={key: spec.column(key).header for key in keys})

    def check(self, spec: SheetSpec, cells: dict[str, str]) -> tuple[Validator, list[RowError]]:
        """The sheet's checks of these cells, as row 1 of a one-row sheet."""
        validator = self.validator(spec, list(cells))
        frame = pd.DataFrame({key: [value] for key, value in cells.items()}, index=[SINGLE_ROW], dtype=object)
        return validator, validator.check_chunk(frame)

    def target(self, member_id: int) -> Member:
        member = self.session.get(Member, member_id, with_for_update=True)
        if member is None or member.organization_id != self.org.id:
            raise NotFoundError(f"no member {member_id} in {self.org.name}.", remedy=Remedy.LIST_MEMBERS)
        if self.actor.role is not Role.OWNER and member.role is not Role.MEMBER:
            raise PermissionDeniedError(
                f"{self.actor.email} is an {self.actor.role.value} of {self.org.name}; only the Owner may "
                f"change {_shown(member)}, who is an {member.role.value}."
            )
        return member

    def keep_an_owner(self, member: Member, doing: str) -> None:
        """Refuse to take away the last active Owner."""
        if member.role is not Role.OWNER or member.status is not Status.ACTIVE:
            return
        others = self.session.scalar(
            select(func.count()).where(
                Member.organization_id == self.org.id,
                Member.role == Role.OWNER,
                Member.status == Status.ACTIVE,
                Member.id != member.id,
            )
        )
        if not others:
            raise ConflictError(
                f"{_shown(member)} is the last active Owner of {self.org.name} and cannot be {doing}; "
                "make another member Owner first."
            )

    def audit(self, action: AuditAction, member: Member, detail: str = "") -> None:
        record(
            self.session,
            actor=self.acting.label,
            action=action,
            organization_id=self.org.id,
            subject=_shown(member),
            detail=detail,
        )

    def view(self, member: Member) -> MemberRecord:
        team = self.session.get(TeamRow, member.team_id) if member.team_id is not None else None
        return member_record(member, team.name if team else None)


def _shown(member: Member) -> str:
    return member.email or member.name


def _role_of(cell: str) -> Role:
    # As the sheet path decides it (checks.worker.Checker._members): the checks allowed only these.
    return Role.ADMIN if cell.lower() == "admin" else Role.MEMBER


def _exists_error(validator: Validator, key: str, value: str) -> RowError:
    return validator.error(SINGLE_ROW, key, ErrorCode.MEMBER_EXISTS, value)


def _revoke_links(session: Session, member_id: int) -> None:
    """The member's unused activation links stop working."""
    session.execute(
        update(ActivationToken)
        .where(
            ActivationToken.member_id == member_id,
            ActivationToken.used_at.is_(None),
            ActivationToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def add_member(engine: Engine, org_ref: str, *, acting: Acting, member: NewMember) -> MemberChange:
    """Add one member (portal or no-portal) with the sheet's rules; refused with the row's errors."""
    user_type = UserType.PORTAL if member.portal else UserType.NO_PORTAL
    spec = load_sheet(user_type)
    cells = {"name": _clean(member.name), "team": _clean(member.team)}
    if member.portal:
        cells |= {"email": _clean(member.email), "role": _clean(member.role)}
    else:
        if member.email or member.role:
            raise ImporterError("a No Portal Access member has no email and no role (always Member).")
        cells["pin"] = _clean(member.pin)
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        validator, errors = scope.check(spec, cells)
        if errors:
            return MemberChange(None, tuple(errors))
        team = scope.context.team_for(cells["team"])
        team_ref = team.id if team else 0
        name_key = cells["name"].lower()  # NFC already: the sheet path's key (values.Members.name_keys)
        pin: str | None = None
        if member.portal:
            key = email_key(cells["email"])
            clash = select(Member.id).where(Member.organization_id == scope.org.id, Member.email_key == key)
            if session.scalar(clash) is not None:
                return MemberChange(None, (_exists_error(validator, "email", cells["email"]),))
            row = Member(
                organization_id=scope.org.id,
                name=cells["name"],
                name_key=name_key,
                email=cells["email"],
                email_key=key,
                user_type=user_type.value,
                role=_role_of(cells["role"]),
                team_id=team.id if team else None,
                team_ref=team_ref,
                status=Status.PENDING,
            )
        else:
            clash = select(Member.id).where(
                Member.organization_id == scope.org.id,
                Member.email_key.is_(None),
                Member.name_key == name_key,
                Member.team_ref == team_ref,
            )
            if session.scalar(clash) is not None:
                return MemberChange(None, (_exists_error(validator, "name", cells["name"]),))
            pin = cells["pin"] or _new_pin()
            row = Member(
                organization_id=scope.org.id,
                name=cells["name"],
                name_key=name_key,
                user_type=user_type.value,
                role=Role.MEMBER,
                team_id=team.id if team else None,
                team_ref=team_ref,
                status=Status.PENDING,
                pin_hash=hash_pin(pin),
            )
        session.add(row)
        session.flush()
        invitation = member.portal and (
            session.scalar(select(Account.id).where(Account.email_key == row.email_key)) is not None
        )
        detail = f"{user_type.value}, {row.role.value}" + (f", team {team.name}" if team else "")
        scope.audit(AuditAction.MEMBER_ADDED, row, detail)
        return MemberChange(scope.view(row), pin=pin, invitation=invitation)


def edit_member(
    engine: Engine, org_ref: str, member_id: int, *, acting: Acting, edit: MemberEdit
) -> MemberChange:
    """Change a member's name, email (pending members only: the old link dies), role or team.

    The sheet's rules check each new value; the privilege rules apply (an Admin changes Members
    only and gives only the Member role; nobody is made Owner by an edit); the last active Owner
    keeps the role.
    """
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        portal = row.user_type == UserType.PORTAL.value
        spec = load_sheet(UserType(row.user_type))
        cells: dict[str, str] = {}
        if edit.name is not None:
            cells["name"] = _clean(edit.name)
        if edit.team is not None:
            cells["team"] = _clean(edit.team)
        if edit.email is not None or edit.role is not None:
            if not portal:
                raise ImporterError(f"{row.name} has no portal access: no email and no role to change.")
            if edit.email is not None:
                if row.status is not Status.PENDING and _clean(edit.email) != row.email:
                    raise ConflictError(
                        f"{row.email} is {row.status.value}: only a pending member's address can change "
                        "(an active member's address is their account)."
                    )
                cells["email"] = _clean(edit.email)
            if edit.role is not None:
                cells["role"] = _clean(edit.role)
        validator, errors = scope.check(spec, cells)
        if errors:
            return MemberChange(None, tuple(errors))
        changes: list[str] = []
        name_key, team_ref = row.name_key, row.team_ref
        if "name" in cells and cells["name"] != row.name:
            changes.append(f"name: {row.name} -> {cells['name']}")
            name_key = cells["name"].lower()
        new_team = scope.context.team_for(cells["team"]) if "team" in cells else None
        if "team" in cells and (new_team.id if new_team else None) != row.team_id:
            old = scope.view(row).team
            changes.append(f"team: {old or '(none)'} -> {new_team.name if new_team else '(none)'}")
            team_ref = new_team.id if new_team else 0
        if not portal and (name_key, team_ref) != (row.name_key, row.team_ref):
            clash = select(Member.id).where(
                Member.organization_id == scope.org.id,
                Member.email_key.is_(None),
                Member.name_key == name_key,
                Member.team_ref == team_ref,
                Member.id != row.id,
            )
            if session.scalar(clash) is not None:
                return MemberChange(None, (_exists_error(validator, "name", cells.get("name", row.name)),))
        new_key: str | None = None
        if "email" in cells and cells["email"] != row.email:
            new_key = email_key(cells["email"])
            clash = select(Member.id).where(
                Member.organization_id == scope.org.id, Member.email_key == new_key, Member.id != row.id
            )
            if session.scalar(clash) is not None:
                return MemberChange(None, (_exists_error(validator, "email", cells["email"]),))
            changes.append(f"email: {row.email} -> {cells['email']}")
        new_role = _role_of(cells["role"]) if "role" in cells else row.role
        if new_role is not row.role:
            scope.keep_an_owner(row, "demoted")
            changes.append(f"role: {row.role.value} -> {new_role.value}")
        if not changes:
            return MemberChange(scope.view(row))
        if "name" in cells:
            row.name, row.name_key = cells["name"], name_key
        if "team" in cells:
            row.team_id, row.team_ref = (new_team.id if new_team else None), team_ref
        if new_key is not None:
            row.email, row.email_key = cells["email"], new_key
            _revoke_links(session, row.id)  # the old address's link dies; the next send mails the new one
            row.invited_at = None
            row.invite_error = None
        row.role = new_role
        scope.audit(AuditAction.MEMBER_EDITED, row, "; ".join(changes))
        return MemberChange(scope.view(row), changed=tuple(c.split(":", 1)[0] for c in changes))


def deactivate_member(engine: Engine, org_ref: str, member_id: int, *, acting: Acting) -> MemberRecord:
    """The member can no longer sign in to this organization; kept, listed as `deactivated`."""
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        if row.status is Status.DEACTIVATED:
            raise ConflictError(f"{_shown(row)} is already deactivated.")
        scope.keep_an_owner(row, "deactivated")
        row.status = Status.DEACTIVATED
        row.deactivated_at = utcnow()
        _revoke_links(session, row.id)
        scope.audit(AuditAction.MEMBER_DEACTIVATED, row)
        return scope.view(row)


def reactivate_member(engine: Engine, org_ref: str, member_id: int, *, acting: Acting) -> MemberRecord:
    """A deactivated member back as they were: active if they had activated, else pending."""
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        if row.status is not Status.DEACTIVATED:
            raise ConflictError(f"{_shown(row)} is {row.status.value}, not deactivated.")
        row.status = Status.ACTIVE if row.activated_at is not None else Status.PENDING
        row.deactivated_at = None
        scope.audit(AuditAction.MEMBER_REACTIVATED, row, f"now {row.status.value}")
        return scope.view(row)


def remove_member(engine: Engine, org_ref: str, member_id: int, *, acting: Acting) -> MemberRecord:
    """Remove a pending member (their links die with them); an active one is deactivated instead."""
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        if row.status is not Status.PENDING:
            raise ConflictError(
                f"{_shown(row)} is {row.status.value}: only a pending member can be removed; deactivate "
                "an active member instead."
            )
        view = scope.view(row)
        scope.audit(AuditAction.MEMBER_REMOVED, row)
        session.execute(delete(ActivationToken).where(ActivationToken.member_id == row.id))
        session.delete(row)
        return view


def regenerate_pin(engine: Engine, org_ref: str, member_id: int, *, acting: Acting) -> NewPin:
    """A new PIN for a No Portal Access member: returned this once, stored hashed as an import stores it."""
    with Session(engine) as session, session.begin():
        scope = _Scope(session, org_ref, acting)
        row = scope.target(member_id)
        if row.user_type != UserType.NO_PORTAL.value:
            raise ImporterError(
                f"{_shown(row)} has portal access and no PIN; PINs are for No Portal Access members."
            )
        pin = _new_pin()
        row.pin_hash = hash_pin(pin)
        scope.audit(AuditAction.PIN_REGENERATED, row)
        return NewPin(scope.view(row), pin)
