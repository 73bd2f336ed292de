"""Send jobs at scale (issue 15): a worker sends over IMPORTER_SMTP_CONNECTIONS connections at
once; a worker killed mid-send leaves the job to another, which sends the rest, and nobody gets a
second message but the one each connection had in flight."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from importer.errors import ImporterError
from importer.jobs import (
    JobSettings,
    JobStatus,
    MailSettings,
    Queue,
    start_embedded_worker,
    submit_activations,
)
from importer.jobs.settings import settings_from_env
from importer.store.models import Job, Member
from tests.activation.test_activation import add_members
from tests.conftest import Org
from tests.smtp_server import Received, RecordingHandler, running_smtp_server
from tests.test_jobs import FAST, _worker_process, ended, queue, redis_url, stop_workers, wait_for  # noqa: F401

SENDER = "Acme <no-reply@acme.example>"
PORTAL = "https://portal.acme.example"
CONNECTIONS = 4


def per_recipient(received: list[Received]) -> Counter[str]:
    return Counter(rcpt for message in received for rcpt in message.rcpt_tos)


def test_the_worker_reads_the_connection_count_from_the_environment() -> None:
    assert settings_from_env({}).mail.smtp_connections == 1
    assert settings_from_env({"IMPORTER_SMTP_CONNECTIONS": "4"}).mail.smtp_connections == 4
    for wrong in ("0", "9", "four"):
        with pytest.raises(ImporterError, match="IMPORTER_SMTP_CONNECTIONS"):
            settings_from_env({"IMPORTER_SMTP_CONNECTIONS": wrong})


def test_a_send_job_uses_the_configured_connections(org: Org, queue: Queue) -> None:  # noqa: F811
    emails = add_members(org, 400)
    handler = RecordingHandler()
    with running_smtp_server(handler) as server:
        mail = MailSettings(
            sender=SENDER, base_url=PORTAL, transport="smtp", smtp_host=server.host, smtp_port=server.port,
            smtp_connections=CONNECTIONS,
        )  # fmt: skip
        settings = JobSettings(imports=FAST.imports, poll_seconds=0.2, mail=mail)
        handle = start_embedded_worker(org.engine, queue=queue, settings=settings)
        try:
            job_id = submit_activations(org.engine, organization_id=org.id, actor=org.owner)
            queue.wake(job_id)
            view = wait_for(ended(org.engine, job_id))
        finally:
            handle.stop()
    assert view.status is JobStatus.DONE, view.error
    assert view.summary is not None and view.summary["sent"] == 400
    assert per_recipient(handler.received) == dict.fromkeys(emails, 1)
    assert handler.connections == CONNECTIONS


def test_a_send_job_whose_worker_is_killed_is_finished_by_another(
    db_url: str,
    org: Org,
    queue: Queue,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emails = add_members(org, 3000)
    handler = RecordingHandler()
    with running_smtp_server(handler) as server:
        for name, value in {
            "IMPORTER_FROM": SENDER, "IMPORTER_BASE_URL": PORTAL, "IMPORTER_TRANSPORT": "smtp",
            "IMPORTER_SMTP_HOST": server.host, "IMPORTER_SMTP_PORT": str(server.port),
            "IMPORTER_SMTP_CONNECTIONS": str(CONNECTIONS),
        }.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        processes = [_worker_process(db_url, queue.url, tmp_path / f"w{n}") for n in (1, 2)]
        try:
            job_id = submit_activations(org.engine, organization_id=org.id, actor=org.owner)
            queue.wake(job_id)

            def holder_of() -> str | None:
                with Session(org.engine) as session:
                    return session.scalar(select(Job.worker).where(Job.id == job_id))

            holder = wait_for(holder_of)
            victim = next(p for p in processes if p.pid == int(holder.split(":")[1]))
            wait_for(lambda: len(handler.received) >= 300, step=0.001)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = len(handler.received)
            view = wait_for(ended(org.engine, job_id))
        finally:
            stop_workers(processes)
    assert killed_at < 3000, "the job ended before its worker could be killed"
    assert view.status is JobStatus.DONE, view.error
    assert view.attempts == 2
    counts = per_recipient(handler.received)
    assert set(counts) == set(emails)  # nobody missed
    assert max(counts.values()) <= 2
    assert sum(counts.values()) - len(emails) <= CONNECTIONS  # at most the messages in flight
    with Session(org.engine) as session:
        never = session.scalars(
            select(Member.email).where(Member.email.in_(emails), Member.invited_at.is_(None))
        ).all()
    assert list(never) == []  # and every member is recorded as emailed
