"""`importer serve`: the portal, the members' pages and the API, with a worker of its own."""

from __future__ import annotations

import os

import click

from importer.cli.app import Obj, cli, pass_obj
from importer.cli.output import say

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@cli.command("serve")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@click.option(
    "--no-worker", is_flag=True, help="Run no background worker here (`importer worker` runs jobs)."
)
@pass_obj
def serve_command(obj: Obj, host: str, port: int, no_worker: bool) -> None:
    """Serve the admin portal, the members' pages and the API (IMPORTER_BASE_URL, IMPORTER_SECRET_KEY)."""
    import uvicorn

    from importer.jobs import Queue, settings_from_env, start_embedded_worker
    from importer.web import WebConfig, create_app
    from importer.web.config import load_secret_key, secret_key_path

    engine = obj.engine(create=True)
    key = os.environ.get("IMPORTER_SECRET_KEY", "").strip()
    if not key:
        path = secret_key_path(obj.url)
        if path is None:
            raise click.UsageError(
                "set IMPORTER_SECRET_KEY: the database is not a SQLite file to keep one beside"
            )
        key = load_secret_key(path)
    base_url = os.environ.get("IMPORTER_BASE_URL", "").strip() or f"http://{host}:{port}"
    config = WebConfig(
        secret_key=key,
        base_url=base_url,
        rate_limit_storage=os.environ.get("IMPORTER_RATE_LIMIT_URL", "memory://"),
    )
    # The queue wakes the workers for the jobs this process submits: this process's own worker,
    # or `importer worker` processes anywhere (IMPORTER_QUEUE_URL=redis://...).
    queue = Queue(os.environ.get("IMPORTER_QUEUE_URL") or None, database_url=obj.url)
    worker = None
    if not no_worker:
        worker = start_embedded_worker(engine, queue=queue, settings=settings_from_env(os.environ))
    say(f"Serving the portal on http://{host}:{port} (Ctrl-C stops it).")
    try:
        uvicorn.run(create_app(engine, config, queue=queue), host=host, port=port, log_level="warning")
    finally:
        if worker is not None:
            worker.stop(wait=True)
