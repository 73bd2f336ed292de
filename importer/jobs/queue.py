"""The queue that wakes workers (huey): on Redis for several machines, a SQLite file beside the
database out of the box. It carries only "there is work" (a job id); the job table decides who
runs what, so a lost wake-up is repaired by the workers' polling and a duplicate one is a no-op.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy.engine import make_url

from importer.errors import ImporterError

QUEUE_NAME = "importer-jobs"
_log = logging.getLogger(__name__)


def _huey(url: str | None, database_url: str | None) -> Huey:
    if url:
        if url.startswith(("redis://", "rediss://", "unix://")):
            return RedisHuey(QUEUE_NAME, url=url, results=False, utc=True)
        raise ImporterError(
            f"{url!r} is not a queue URL: give a redis:// URL, or none (the queue then "
            "lives beside a SQLite database)."
        )
    if database_url:
        parsed = make_url(database_url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            return SqliteHuey(QUEUE_NAME, filename=os.path.abspath(parsed.database) + ".queue", results=False)
    # No shared queue (PostgreSQL without Redis): wake-ups stay in this process; other processes
    # find their work by polling the job table.
    return MemoryHuey(QUEUE_NAME, results=False)


class Queue:
    """Wakes workers: built from a queue URL (redis://...) or None (embedded, beside the database)."""

    def __init__(self, url: str | None = None, *, database_url: str | None = None) -> None:
        self.url = url
        self.huey = _huey(url, database_url)
        self._handler: Callable[[int], None] | None = None

        def wake(job_id: int) -> None:
            if self._handler is not None:
                self._handler(job_id)

        self._task = self.huey.task(name="importer.wake")(wake)

    def wake(self, job_id: int) -> bool:
        """Tell the workers that a job waits; False when the queue cannot be reached (the workers
        still find the job by polling the job table)."""
        try:
            self._task(job_id)
        except Exception as exc:
            _log.warning("could not wake a worker for job %s: %s", job_id, exc)
            return False
        return True

    def serve(self, handler: Callable[[int], None]) -> None:
        """Run `handler(job_id)` for each wake-up this process's consumer takes."""
        self._handler = handler


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """huey's consumer without its signal handlers: it runs in threads of a process that owns its
    signals (the web server, or `importer worker`, which stops it on Ctrl-C)."""

    def _set_signal_handlers(self) -> None:
        pass


def consumer(queue: Queue, *, threads: int, idle_seconds: float) -> EmbeddedConsumer:
    """A consumer of the queue with `threads` worker threads."""
    options: dict[str, Any] = {
        "workers": threads,
        "worker_type": "thread",
        "periodic": False,
        "initial_delay": 0.05,
        "max_delay": idle_seconds,
        "check_worker_health": True,
        "health_check_interval": 5,
    }
    return EmbeddedConsumer(queue.huey, **options)
