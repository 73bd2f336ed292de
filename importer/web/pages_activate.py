"""The set-password page (/activate?token=...): public; opening it never uses the token up."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from importer import jobs
from importer.accounts.passwords import get_password_policy
from importer.activation.activating import activate, check_token, renewal_for
from importer.errors import ActivationError
from importer.web.answers import with_remedy
from importer.web.passwords import password_problems
from importer.web.portal import client_address, portal_of

router = APIRouter()
_log = logging.getLogger(__name__)
# Far more than a token or a pasted link needs; anything longer is not one.
MAX_TOKEN_CHARS = 2000
NEW_LINK_ANSWER = (
    "If this link belongs to a member who has not activated yet, a new link is on its way to their "
    "address. Check your inbox (and the spam folder) in a few minutes."
)


def _limit(request: Request) -> None:
    portal = portal_of(request)
    portal.limits.hit(portal.config.activate_per_address, "activate-address", client_address(request))


def _refused(request: Request, token: str, exc: ActivationError) -> Response:
    message = with_remedy(str(exc), exc.remedy, exc.remedy_arg)
    return portal_of(request).render(
        request, "activate_refused.html", {"message": message, "token": token}, status=410
    )


def _form(request: Request, token: str, *, problems: list[str], status: int = 200) -> Response:
    portal = portal_of(request)
    try:
        member = check_token(portal.engine, token)
    except ActivationError as exc:
        return _refused(request, token, exc)
    policy = get_password_policy(portal.engine, member.organization)
    context = {
        "token": token,
        "member": member,
        "has_account": bool(getattr(member, "has_account", False)),
        "rules": [
            policy.describe(),
            "not one of the most common passwords",
            "not containing your email address",
        ],
        "problems": problems,
    }
    return portal.render(request, "activate.html", context, status=status)


@router.get("/activate", include_in_schema=False)
def activate_page(request: Request, token: str = "") -> Response:
    """Names the organization and the member and asks the password; the token stays unused."""
    _limit(request)
    return _form(request, token, problems=[])


@router.post("/activate", include_in_schema=False)
def activate_submit(
    request: Request,
    token: Annotated[str, Form()],
    new_password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
    accept: Annotated[str, Form()] = "",
) -> Response:
    """Set the password (or accept the invitation); success leads to the sign-in page."""
    _limit(request)
    portal = portal_of(request)
    try:
        member = check_token(portal.engine, token)
    except ActivationError as exc:
        return _refused(request, token, exc)
    try:
        if member.has_account:
            activate(portal.engine, token, None)  # accepting an invitation: no password
        else:
            policy = get_password_policy(portal.engine, member.organization)
            problems = password_problems(
                new_password, confirm=confirm_password, email=member.email, policy=policy
            )
            if problems:
                return _form(request, token, problems=problems, status=422)
            activate(portal.engine, token, new_password)
    except ActivationError as exc:
        # The policy changed meanwhile, or the link died between the two reads.
        return _form(request, token, problems=[str(exc)], status=422)
    return RedirectResponse("/login?activated=1", status_code=303)


def queue_new_link(engine: Engine, token: str) -> int | None:
    """Queue a new link's email for the pending member of a dead link (the job id), or nothing."""
    renewal = renewal_for(engine, token)
    if renewal is None:
        return None
    return jobs.submit_activations(
        engine,
        organization_id=renewal.organization_id,
        actor=renewal.email,  # the member asks for themselves: the audit names them, no admin
        resend=True,
        member_ids=[renewal.member_id],
        self_service=True,
    )


def _queue_quietly(engine: Engine, token: str) -> None:
    try:
        queue_new_link(engine, token)
    except Exception:  # after the answer was sent: logged for the operator, never shown
        _log.exception("could not queue a new activation link")


@router.post("/activate/new-link", include_in_schema=False)
def new_link(request: Request, background: BackgroundTasks, token: Annotated[str, Form()] = "") -> Response:
    """`Send me a new link`: the same answer whether or not the link was known. The lookup and the
    queueing run after the answer has gone, so its timing says nothing about the link either."""
    _limit(request)
    background.add_task(_queue_quietly, portal_of(request).engine, token[:MAX_TOKEN_CHARS])
    return portal_of(request).render(request, "activate_sent.html", {"message": NEW_LINK_ANSWER})
