"""A batch's page (live progress, then its report and files), the Batches list and a confirmed Undo.

Every file comes from the database (importer.jobs), so any web process serves any batch wherever
its worker ran. Another organization's batch answers 404 whatever id is typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from importer import jobs
from importer.errors import ConflictError, NotFoundError
from importer.records import BatchOutcome, BatchRecord
from importer.store.models import Batch
from importer.store.orgs import batch_record, list_batches, show_batch
from importer.web.answers import WebError
from importer.web.portal import Id, admin_membership, portal_of, signed_in

router = APIRouter()
# The report's files offered for download, in this order, named after their files.
DOWNLOADS = ("rejected.xlsx", "rejected.csv", "errors.csv", "summary.json")
MEDIA_TYPES = {
    "rejected.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "rejected.csv": "text/csv; charset=utf-8",
    "errors.csv": "text/csv; charset=utf-8",
    "summary.json": "application/json",
    "report.html": "text/html; charset=utf-8",
}
MAX_BATCH_ID = 40  # the column's size: a longer id is no batch
REFRESH_SECONDS = 2
# Batches listed per page of the Batches page (newest first; `Next` goes on).
BATCHES_PAGE = 100
UNDOABLE = {BatchOutcome.COMPLETED}
_STYLE_ATTRIBUTE = re.compile(r'\sstyle="[^"]*"')


def _not_found() -> NotFoundError:
    return NotFoundError("No such batch in this organization.")


def _undoable(engine: Engine, org_id: int, batch_id: str) -> BatchRecord:
    """The organization's batch if Undo applies to it: 404 for none, 409 unless a completed import."""
    record = _record(engine, org_id, batch_id)
    if record is None:
        raise _not_found()
    if record.outcome not in UNDOABLE:
        shown = record.outcome.value.replace("_", " ")
        raise ConflictError(f"Batch {record.id} is {shown}: only a completed import can be undone.")
    if batch_id in jobs.undos_waiting(engine, org_id):
        raise ConflictError(f"Batch {record.id} is being undone already.")
    return record


def _record(engine: Engine, org_id: int, batch_id: str) -> BatchRecord | None:
    """The organization's batch, or None (another organization's counts as none)."""
    if len(batch_id) > MAX_BATCH_ID:
        return None
    with Session(engine) as session:
        batch = session.get(Batch, batch_id)
        if batch is None or batch.organization_id != org_id:
            return None
        return batch_record(batch)


def report_body(html: bytes) -> Markup:
    """The body of the CLI's report.html, to show inside the batch page.

    The report is written by our own template with autoescaping on (every user text in it is escaped
    already); its inline script and style attributes go (the page's CSP allows neither): the portal
    serves the same styles and filter as static files (report.css, report.js).
    """
    text = html.decode("utf-8", errors="replace")
    start = text.find("<body>")
    start = start + len("<body>") if start >= 0 else 0
    end = text.find("<script", start)
    if end < 0:
        end = text.find("</body>", start)
    body = text[start : end if end >= 0 else len(text)]
    return Markup(_STYLE_ATTRIBUTE.sub("", body))  # noqa: S704 -- our own escaped report


@dataclass(frozen=True, slots=True)
class BatchState:
    """What the batch page shows: the job's progress and, once done, the report and its files."""

    batch_id: str
    job: jobs.JobView | None
    record: BatchRecord | None
    report: Markup | None
    files: tuple[str, ...]
    pins: bool

    @property
    def finished(self) -> bool:
        """Whether the page stops refreshing: the job ended (or the batch came from the CLI)."""
        return self.job is None or self.job.status in (jobs.JobStatus.DONE, jobs.JobStatus.FAILED)


def _state(engine: Engine, org_id: int, batch_id: str, viewer_email: str) -> BatchState:
    record = _record(engine, org_id, batch_id)
    job = jobs.batch_job(engine, org_id, batch_id) if len(batch_id) <= MAX_BATCH_ID else None
    if record is None and job is None:
        raise _not_found()
    report: Markup | None = None
    files: tuple[str, ...] = ()
    pins = False
    if record is not None and (job is None or job.status is jobs.JobStatus.DONE):
        html = jobs.report_file(engine, organization_id=org_id, batch_id=batch_id, name="report.html")
        report = report_body(html) if html is not None else None
        stored = set(jobs.report_files(engine, organization_id=org_id, batch_id=batch_id))
        files = tuple(name for name in DOWNLOADS if name in stored)
        pins = jobs.pins_waiting(engine, organization_id=org_id, batch_id=batch_id, actor=viewer_email)
    return BatchState(batch_id, job, record, report, files, pins)


@router.get("/orgs/{org_id}/batches/{batch_id}", include_in_schema=False)
def batch_page(request: Request, org_id: Id, batch_id: str) -> Response:
    """While the job runs: its status, place in the queue, phase, rows done of total (the page
    refreshes itself, no script needed). Then the report itself and its files."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    portal = portal_of(request)
    state = _state(portal.engine, org_id, batch_id, viewer.email)
    context = {"state": state, "refresh": REFRESH_SECONDS, "statuses": jobs.JobStatus}
    return portal.render(request, "batch.html", context, viewer=viewer, org=org)


@router.get("/orgs/{org_id}/batches/{batch_id}/files/{name}", include_in_schema=False)
def batch_file(request: Request, org_id: Id, batch_id: str, name: str) -> Response:
    """One report file, as an attachment (from the database: any web process serves it)."""
    viewer = signed_in(request)
    admin_membership(viewer, org_id)
    content = None
    if name in MEDIA_TYPES and len(batch_id) <= MAX_BATCH_ID:
        content = jobs.report_file(portal_of(request).engine, organization_id=org_id, batch_id=batch_id,
                                   name=name)  # fmt: skip
    if content is None:
        raise NotFoundError("No such file in this organization's batches.")
    return Response(
        content,
        media_type=MEDIA_TYPES[name],
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-{name}"'},
    )


@router.post("/orgs/{org_id}/batches/{batch_id}/pins", include_in_schema=False)
def batch_pins(request: Request, org_id: Id, batch_id: str) -> Response:
    """The generated PINs, once, to the uploader: deleted as they are handed over."""
    viewer = signed_in(request)
    admin_membership(viewer, org_id)
    content = None
    if len(batch_id) <= MAX_BATCH_ID:
        content = jobs.take_pins(portal_of(request).engine, organization_id=org_id, batch_id=batch_id,
                                 actor=viewer.email)  # fmt: skip
    if content is None:
        raise WebError(
            404, "not_found", "These PINs were already downloaded (they are shown once), or are not yours."
        )
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{batch_id}-pins.csv"'},
    )


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One line of the Batches page: a recorded batch, or an import job that has none yet."""

    batch_id: str | None
    record: BatchRecord | None
    job: jobs.JobView | None
    undoing: bool = False  # an undo is queued or running

    @property
    def undoable(self) -> bool:
        """Whether Undo is offered: a completed import (its pending members can be removed), not
        being undone already."""
        return self.record is not None and self.record.outcome in UNDOABLE and not self.undoing


def _rows(engine: Engine, org_id: int, *, before: str | None) -> tuple[list[BatchRow], str | None]:
    """One page of the Batches page, and the batch id the next page starts after (None: the last).

    The first page also lists the imports still waiting or running, whose batch is not saved yet.
    """
    records = list_batches(engine, str(org_id), limit=BATCHES_PAGE + 1, before=before)
    older = records[BATCHES_PAGE - 1].id if len(records) > BATCHES_PAGE else None
    records = records[:BATCHES_PAGE]
    known = {r.id for r in records}
    latest: dict[str, jobs.JobView] = {}
    waiting: list[BatchRow] = []
    for job in jobs.import_jobs(engine, org_id):  # newest first
        if job.batch_id in known:
            latest.setdefault(job.batch_id, job)
        elif job.status is not jobs.JobStatus.DONE and before is None:
            waiting.append(BatchRow(job.batch_id, None, job))
    undoing = jobs.undos_waiting(engine, org_id)
    listed = [BatchRow(r.id, r, latest.get(r.id), r.id in undoing) for r in records]
    return waiting + listed, older


@router.get("/orgs/{org_id}/batches", include_in_schema=False)
def batches_page(request: Request, org_id: Id, notice: str = "", before: str = "") -> Response:
    """Every import of the organization, newest first, BATCHES_PAGE at a time: who, when, file,
    counts, outcome; Undo. `before`: the page after this batch (the `Next` link)."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    portal = portal_of(request)
    try:
        rows, older = _rows(portal.engine, org_id, before=before.strip() or None)
    except NotFoundError:
        raise _not_found() from None
    context = {
        "rows": rows,
        "older": older,
        "paged": bool(before.strip()),
        "notice": notice,
        "statuses": jobs.JobStatus,
    }
    return portal.render(request, "batches.html", context, viewer=viewer, org=org)


@router.get("/orgs/{org_id}/batches/{batch_id}/undo", include_in_schema=False)
def undo_page(request: Request, org_id: Id, batch_id: str) -> Response:
    """Undo asks first: how many pending members go, how many active ones stay."""
    viewer = signed_in(request)
    org = admin_membership(viewer, org_id)
    portal = portal_of(request)
    _undoable(portal.engine, org_id, batch_id)
    detail = show_batch(portal.engine, batch_id)
    return portal.render(request, "batch_undo.html", {"detail": detail}, viewer=viewer, org=org)


@router.post("/orgs/{org_id}/batches/{batch_id}/undo", include_in_schema=False)
async def undo_submit(request: Request, org_id: Id, batch_id: str) -> Response:
    """Queue the undo (a background job, audited with the account that confirmed it)."""
    viewer = signed_in(request)
    admin_membership(viewer, org_id)
    portal = portal_of(request)
    await run_in_threadpool(_undoable, portal.engine, org_id, batch_id)
    job_id = await run_in_threadpool(
        lambda: jobs.submit_undo(portal.engine, organization_id=org_id, actor=viewer.email, batch_id=batch_id)
    )
    await run_in_threadpool(portal.wake, job_id)
    notice = f"Undoing batch {batch_id} in the background: its pending members are being removed."
    return RedirectResponse(f"/orgs/{org_id}/batches?{urlencode({'notice': notice})}", status_code=303)
