"""The Import page: the user type, the sample sheets with the organization's teams, the upload.

An upload becomes a background import job (importer.jobs); the answer is its batch page.
"""

from __future__ import annotations

from pathlib import PurePath

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from importer import jobs
from importer.accounts.teams import list_teams
from importer.errors import FileLevelError, ImporterError, LimitExceededError, UnsupportedFileError
from importer.reading.sheet import SUPPORTED_EXTENSIONS
from importer.reports.samples import UploadWords, render_template, template_file_name
from importer.sheets import load_sheet
from importer.values import Limit, UserType
from importer.web.answers import answer_for
from importer.web.middleware import spooled_size
from importer.web.portal import Id, admin_membership, portal_of, signed_in
from importer.web.sessions import Membership, Viewer

router = APIRouter()
SAMPLE_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
TYPE_LABELS = {UserType.PORTAL: "Portal Access", UserType.NO_PORTAL: "No Portal Access"}
# How the sample's Instructions sheet says to upload it, in the portal's words.
PORTAL_WORDS = UploadWords(
    upload="the portal's Import page: choose {user_type}, then Spreadsheet and Upload",
    teams_elsewhere="the sample downloaded from the Import page has a dropdown of them",
)


def _user_type(value: str) -> UserType:
    return UserType.NO_PORTAL if value == UserType.NO_PORTAL.value else UserType.PORTAL


def _import_page(
    request: Request,
    viewer: Viewer,
    org: Membership,
    *,
    user_type: UserType,
    dry_run: bool = False,
    all_or_nothing: bool = False,
    error: str = "",
    status: int = 200,
) -> Response:
    portal = portal_of(request)
    teams = [t.name for t in list_teams(portal.engine, str(org.organization_id))]
    context = {
        "user_type": user_type.value,
        "types": [(t.value, label) for t, label in TYPE_LABELS.items()],
        "teams": teams,
        "dry_run": dry_run,
        "all_or_nothing": all_or_nothing,
        "error": error,
        "max_bytes": portal.config.settings.max_file_bytes,
        "extensions": ", ".join(sorted(SUPPORTED_EXTENSIONS)),
    }
    return portal.render(request, "import.html", context, viewer=viewer, org=org, status=status)


@router.get("/orgs/{org_id}/import", include_in_schema=False)
def import_page(request: Request, org_id: Id, type: str = "") -> Response:
    """The Import page: user type, sample downloads, the upload form."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    return _import_page(request, viewer, org, user_type=_user_type(type))


@router.get("/orgs/{org_id}/import/sample.{fmt}", include_in_schema=False)
def sample(request: Request, org_id: Id, fmt: str, type: str = "") -> Response:
    """The sample sheet (CSV, or Excel with the organization's teams in the Team dropdown)."""
    viewer = signed_in(request)
    admin_membership(viewer, org_id)
    if fmt not in SAMPLE_TYPES:
        raise ImporterError("Samples come as .xlsx or .csv.")
    spec = load_sheet(_user_type(type))
    teams = [t.name for t in list_teams(portal_of(request).engine, str(org_id))]
    data = render_template(spec, fmt=fmt, teams=teams, words=PORTAL_WORDS)
    name = template_file_name(spec, fmt)
    return Response(
        data,
        media_type=SAMPLE_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/orgs/{org_id}/import", include_in_schema=False)
async def upload(request: Request, org_id: Id) -> Response:
    """Queue the import of the uploaded sheet and answer with its batch page (303)."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    portal = portal_of(request)
    form = await request.form()  # parsed (and its size limited) as it streamed in
    user_type = _user_type(str(form.get("type", "")))
    dry_run, all_or_nothing = form.get("dry_run") == "on", form.get("all_or_nothing") == "on"
    max_bytes = portal.config.settings.max_file_bytes
    try:
        sheet = form.get("spreadsheet")
        if not isinstance(sheet, UploadFile) or not sheet.filename:
            raise FileLevelError("Choose a spreadsheet to upload.")
        name = PurePath(sheet.filename.replace("\\", "/")).name
        extension = PurePath(name).suffix.lower()
        if extension not in SUPPORTED_EXTENSIONS:
            raise UnsupportedFileError(
                f"{name}: unsupported file type {extension or '(none)'!r}; use one of "
                f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}."
            )
        size = await run_in_threadpool(spooled_size, sheet.file)
        if size > max_bytes:
            raise LimitExceededError(
                f"{name} is larger than the limit {Limit.FILE_BYTES.value} ({max_bytes:,} bytes); "
                "nothing was imported.",
                limit=Limit.FILE_BYTES,
                allowed=max_bytes,
            )
        if not size:
            raise FileLevelError(f"{name} is empty: there is nothing to import.")
        job_id = await run_in_threadpool(
            jobs.submit_import,
            portal.engine,
            organization_id=org_id,
            actor=viewer.email,
            file_name=name,
            content=sheet.file,  # stored a part at a time from where the form parser spooled it
            user_type=user_type,
            dry_run=dry_run,
            all_or_nothing=all_or_nothing,
        )
    except ImporterError as exc:
        answer = answer_for(exc)
        return _import_page(
            request, viewer, org, user_type=user_type, dry_run=dry_run, all_or_nothing=all_or_nothing,
            error=answer.message, status=answer.status,
        )  # fmt: skip
    await run_in_threadpool(portal.wake, job_id)
    view = await run_in_threadpool(jobs.job_view, portal.engine, job_id)
    return RedirectResponse(f"/orgs/{org_id}/batches/{view.batch_id}", status_code=303)
