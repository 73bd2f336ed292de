"""`importer worker`: runs the background jobs (portal and API imports, sends, undos) until Ctrl-C."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import click

from importer.cli.answers import INTERRUPTED
from importer.cli.app import Obj, cli, pass_obj
from importer.cli.output import say


@cli.command("worker")
@click.option(
    "--queue",
    "queue_url",
    envvar="IMPORTER_QUEUE_URL",
    metavar="URL",
    help="Queue URL redis://HOST:PORT/DB (or IMPORTER_QUEUE_URL); default: a file beside the SQLite db.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Jobs this worker runs at once.",
)
@pass_obj
def worker_command(obj: Obj, queue_url: str | None, threads: int) -> None:
    """Run background jobs (imports, sends and undos from the portal and the API) until Ctrl-C.

    Mail settings come from the environment as for send-activations (IMPORTER_FROM,
    IMPORTER_BASE_URL, IMPORTER_TRANSPORT, IMPORTER_OUTBOX, IMPORTER_SMTP_*); limits from
    IMPORTER_MAX_IMPORTS_PER_ORG and IMPORTER_MAX_IMPORTS. Ctrl-C lets the running jobs finish; a
    second Ctrl-C stops at once (another worker takes their jobs over when their lease runs out).
    """
    import logging

    from importer.cli.process import tuned_for_import
    from importer.jobs import run_worker, settings_from_env

    settings = settings_from_env(os.environ)
    click.get_current_context().meta[INTERRUPTED] = (
        "the jobs it was running are taken over by another worker once their lease runs out."
    )
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def ask_to_stop(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say("Stopping: finishing the running jobs (Ctrl-C again stops at once).", err=True)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, ask_to_stop)
    where = queue_url or "beside the database"
    say(f"Worker running {threads} job thread(s); queue: {where}. Ctrl-C stops it.", err=True)
    # This process is the worker's own: the collector and the csv module are tuned for imports.
    with tuned_for_import(max_cell_chars=settings.imports.max_cell_chars):
        run_worker(obj.url, queue_url=queue_url, settings=settings, stop=stop, threads=threads)
    say("Worker stopped.", err=True)
