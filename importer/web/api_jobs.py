"""The API's background jobs (/api/v1): upload an import, poll it, fetch its report files, start a
send of activation emails and poll that job. Any web process answers for any job: the job table and
the stored files are in the database, wherever the worker ran.

    POST /api/v1/orgs/{org_id}/imports                 -> 202 {"batch_id", "status_url"}
    GET  /api/v1/orgs/{org_id}/imports/{batch_id}      -> {"status", "rows_done", "rows_total", "summary"...}
    GET  /api/v1/orgs/{org_id}/imports/{batch_id}/files/{name}
    POST /api/v1/orgs/{org_id}/activations             -> 202 {"job_id", "status_url"}
    GET  /api/v1/orgs/{org_id}/jobs/{job_id}
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from importer.errors import NotFoundError
from importer.jobs import (
    JobKind,
    JobStatus,
    JobView,
    batch_job,
    job_view,
    report_file,
    report_files,
    submit_activations,
    submit_import,
)
from importer.values import UserType
from importer.web.answers import WebError
from importer.web.api import ERRORS, Owner, admin_org
from importer.web.middleware import BodyTooLarge, spooled_size
from importer.web.portal import Id, portal_of

router = APIRouter(prefix="/api/v1", responses=ERRORS)

# The report files a batch may have, and how each is served (the generated PINs are not one of
# them: the uploader takes them once from the batch page).
REPORT_TYPES = {
    "rejected.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "rejected.csv": "text/csv; charset=utf-8",
    "errors.csv": "text/csv; charset=utf-8",
    "summary.json": "application/json",
    "report.html": "text/html; charset=utf-8",
}
BatchId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z_-]+$")]
FileName = Annotated[str, Path(min_length=1, max_length=100)]
# A checkbox of the multipart form, spelled as its documented values (a form field is text). An
# empty field is taken as absent (FastAPI's rule for forms): false, and documented so.
Flag = Annotated[
    Literal["true", "false", "True", "False", "1", "0", "on", "off", "yes", "no", ""],
    Form(description="true or false (empty: false)"),
]
TRUE = frozenset({"true", "True", "1", "on", "yes"})


class Accepted(BaseModel):
    """An import taken: its batch id (drawn now) and where to poll it."""

    batch_id: str
    status_url: str


class JobAccepted(BaseModel):
    """A job taken: its id and where to poll it."""

    job_id: int
    status_url: str


class JobOut(BaseModel):
    """A job as it stands: queued (with its place in the queue), running (rows done of total),
    done (with the summary: for an import, the CLI's `--json` object) or failed (with the error)."""

    id: int
    kind: str
    status: str = Field(description="queued, running, done or failed")
    phase: str
    rows_done: int
    rows_total: int | None
    batch_id: str | None
    summary: dict[str, Any] | None
    error: str | None
    queue_position: int | None
    status_url: str
    files: dict[str, str] = Field(default_factory=dict, description="Report file name -> its URL.")


class SendIn(BaseModel):
    """Which activation emails to send: one batch's, or every pending member's; `resend` as the CLI's."""

    batch_id: str | None = Field(default=None, min_length=1, max_length=40)
    resend: bool = False


def _import_url(org_id: int, batch_id: str) -> str:
    return f"/api/v1/orgs/{org_id}/imports/{batch_id}"


def _job_url(org_id: int, job_id: int) -> str:
    return f"/api/v1/orgs/{org_id}/jobs/{job_id}"


def _out(request: Request, org_id: int, view: JobView) -> JobOut:
    files: dict[str, str] = {}
    if view.kind is JobKind.IMPORT:
        url = _import_url(org_id, view.batch_id or "")
        if view.status is JobStatus.DONE and view.batch_id:
            names = report_files(portal_of(request).engine, organization_id=org_id, batch_id=view.batch_id)
            files = {name: f"{url}/files/{name}" for name in names if name in REPORT_TYPES}
    else:
        url = _job_url(org_id, view.id)
    return JobOut(
        id=view.id,
        kind=view.kind.value,
        status=view.status.value,
        phase=view.phase,
        rows_done=view.rows_done,
        rows_total=view.rows_total,
        batch_id=view.batch_id,
        summary=view.summary,
        error=view.error,
        queue_position=view.queue_position,
        status_url=url,
        files=files,
    )


@router.post("/orgs/{org_id}/imports", status_code=202, response_model=Accepted)
async def upload(
    request: Request,
    viewer: Owner,
    org_id: Id,
    file: Annotated[UploadFile, File(description="The sheet (.csv or .xlsx)")],
    type: Annotated[UserType, Form(description="portal or no-portal")],
    dry_run: Flag = "false",
    all_or_nothing: Flag = "false",
) -> Accepted:
    """Queue the import of a sheet (the CLI's `import` options); poll `status_url` for its progress.

    The size limit applies while the file streams in (413 naming the limit); the sheet's own
    limits and checks run in the job, as in the CLI."""
    admin_org(viewer, org_id)
    portal = portal_of(request)
    allowed = portal.config.settings.max_file_bytes
    if await run_in_threadpool(spooled_size, file.file) > allowed:
        raise BodyTooLarge("max_file_bytes", allowed)
    # Storing the upload (up to max_file_bytes, a part at a time) is blocking work: off the event loop.
    job_id = await run_in_threadpool(
        functools.partial(
            submit_import,
            portal.engine,
            organization_id=org_id,
            actor=viewer.email,
            file_name=file.filename or "upload",
            content=file.file,
            user_type=type,
            dry_run=dry_run in TRUE,
            all_or_nothing=all_or_nothing in TRUE,
        )
    )
    portal.wake(job_id)
    view = await run_in_threadpool(job_view, portal.engine, job_id)
    assert view.batch_id is not None  # an import's batch id is drawn when it is submitted
    return Accepted(batch_id=view.batch_id, status_url=_import_url(org_id, view.batch_id))


@router.get("/orgs/{org_id}/imports/{batch_id}", response_model=JobOut)
def import_status(request: Request, viewer: Owner, org_id: Id, batch_id: BatchId) -> JobOut:
    """An import's state: queued (queue_position), running (rows_done of rows_total), done (summary,
    the CLI's `--json` object, and the report files' URLs) or failed (error)."""
    admin_org(viewer, org_id)
    view = batch_job(portal_of(request).engine, org_id, batch_id)
    if view is None:
        raise WebError(404, "not_found", f"No import {batch_id} in this organization.")
    return _out(request, org_id, view)


@router.get(
    "/orgs/{org_id}/imports/{batch_id}/files/{name}",
    response_class=Response,
    responses={200: {"description": "The file", "content": {kind: {} for kind in REPORT_TYPES.values()}}},
)
def import_file(request: Request, viewer: Owner, org_id: Id, batch_id: BatchId, name: FileName) -> Response:
    """One report file of an import: rejected.xlsx, rejected.csv, errors.csv, summary.json or
    report.html (as the CLI writes them)."""
    admin_org(viewer, org_id)
    content = None
    if name in REPORT_TYPES:
        content = report_file(portal_of(request).engine, organization_id=org_id, batch_id=batch_id, name=name)
    if content is None:
        raise WebError(404, "not_found", f"No report file {name!r} for import {batch_id} here.")
    return Response(
        content,
        media_type=REPORT_TYPES[name],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/orgs/{org_id}/activations", status_code=202, response_model=JobAccepted)
def activations(request: Request, viewer: Owner, org_id: Id, body: SendIn) -> JobAccepted:
    """Queue a send of the activation emails (of one batch, or all pending members not yet emailed;
    with `resend`, again to those already emailed); poll `status_url`."""
    admin_org(viewer, org_id)
    engine = portal_of(request).engine
    job_id = submit_activations(
        engine, organization_id=org_id, actor=viewer.email, batch_id=body.batch_id, resend=body.resend
    )
    portal_of(request).wake(job_id)
    return JobAccepted(job_id=job_id, status_url=_job_url(org_id, job_id))


@router.get("/orgs/{org_id}/jobs/{job_id}", response_model=JobOut)
def job_status(request: Request, viewer: Owner, org_id: Id, job_id: Id) -> JobOut:
    """Any background job of the organization (an import, a send, an undo) as it stands."""
    admin_org(viewer, org_id)
    engine = portal_of(request).engine
    try:
        view = job_view(engine, job_id)
    except NotFoundError:
        view = None
    if view is None or view.organization_id != org_id:
        raise WebError(404, "not_found", f"No job {job_id} in this organization.")
    return _out(request, org_id, view)
