"""Several machines: two `importer serve --no-worker` and two `importer worker` processes, each in a
working directory of its own, sharing nothing but a fresh PostgreSQL database and a Redis database.

An upload through web 1 is watched through web 2 (rows done rising); the worker running it is
killed with SIGKILL part-way; the other worker finishes it once the lease runs out; the members and
the summary equal a CLI import of the same file into another database, and web 2 serves every
report file."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from importer.store.engine import open_database
from importer.store.models import Job, Member, Team
from importer.store.orgs import create_organization, create_teams
from tests import conftest
from tests.conftest import POSTGRES_ENV

pytestmark = pytest.mark.postgres

IMPORTER = str(Path(sys.executable).parent / "importer")
ROWS = 150_000
ORG = "Acme Machines"
OWNER = "olive.owner@acme.example"
PASSWORD = "Tangerine-Harbour-42"
DEADLINE = 90.0
REPORT_FILES = {
    "rejected.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "rejected.csv": "text/csv; charset=utf-8",
    "errors.csv": "text/csv; charset=utf-8",
    "summary.json": "application/json",
    "report.html": "text/html; charset=utf-8",
}


def wait_for(what: Callable[[], Any], message: str, *, deadline: float = DEADLINE) -> Any:
    """tests.conftest.wait_for with this module's deadline."""
    return conftest.wait_for(what, message, deadline=deadline)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def databases() -> Iterator[tuple[str, str]]:
    """Two fresh databases on the real PostgreSQL server (the portal's, the CLI's), dropped after."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set (CI sets it; the PostgreSQL tests then must pass)")
    names = [f"m_{secrets.token_hex(5)}", f"c_{secrets.token_hex(5)}"]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server must be there when CI says so: fail, never skip
        pytest.fail(f"PostgreSQL at {base} is unreachable: {exc}")
    url = make_url(base)
    try:
        yield (
            url.set(database=names[0]).render_as_string(hide_password=False),
            url.set(database=names[1]).render_as_string(hide_password=False),
        )
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_url() -> str:
    """Database 12 of the tests' Redis server, emptied first: this test's own, so that its flush never
    meets the job tests running beside it."""
    return conftest.fresh_redis(12)


def environment(home: Path, db_url: str, queue_url: str) -> dict[str, str]:
    """What one process is given: the two services, the key, the short lease; nothing else."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "IMPORTER_DATABASE_URL": db_url,
        "IMPORTER_QUEUE_URL": queue_url,
        "IMPORTER_SECRET_KEY": "machines-test-key-" + "k" * 32,
        "IMPORTER_BASE_URL": "http://127.0.0.1:8000",
        "IMPORTER_JOB_LEASE_SECONDS": "2",
        "IMPORTER_JOB_POLL_SECONDS": "0.3",
        "IMPORTER_CHUNK_ROWS": "5000",
    }


def cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [IMPORTER, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, check=False
    )
    assert done.returncode in (0, 3), f"importer {' '.join(args)}: {done.returncode} {done.stderr}"
    return done.stdout


def members_of(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.execute(
            select(Member.name, Member.email, Member.role, Team.name, Member.status, Member.user_type)
            .join(Team, Team.id == Member.team_id, isouter=True)
            .order_by(Member.name, Member.email)
        ).all()
    return [tuple(row) for row in rows]


def without_run(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("batch_id", "report_dir")}


def test_two_web_processes_and_two_workers_share_only_postgres_and_redis(
    databases: tuple[str, str], redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    import datagen  # benchmarks/datagen.py: realistic rows, ~2% of them bad

    sheet = datagen.ensure_csv(tmp_path / "data", rows=ROWS).path
    portal_db, cli_db = databases
    homes = {name: tmp_path / name for name in ("setup", "web1", "web2", "worker1", "worker2", "cli")}
    for home in homes.values():
        home.mkdir()
    env = {name: environment(home, portal_db, redis_url) for name, home in homes.items()}

    # The organization (its schema first, then every process may start), its Owner following the
    # link `org create` prints, its teams and an API token: the CLI, as an operator would.
    created = cli(env["setup"], homes["setup"], "org", "create", ORG, "--owner-email", OWNER,
                  "--owner-name", "Olive Owner")  # fmt: skip
    ports = {"web1": free_port(), "web2": free_port()}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    engines: list[Engine] = []
    try:
        for name, port in ports.items():
            processes[name] = subprocess.Popen(
                [IMPORTER, "serve", "--no-worker", "--port", str(port)], env=env[name], cwd=homes[name],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for name in ("worker1", "worker2"):
            processes[name] = subprocess.Popen(
                [IMPORTER, "worker"], env=env[name], cwd=homes[name],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        link = created.strip().splitlines()[-1]
        cli(env["setup"], homes["setup"], "activate", "--password-stdin", stdin=f"{link}\n{PASSWORD}\n")
        cli(env["setup"], homes["setup"], "team", "create", "--org", ORG, *datagen.TEAMS)
        token = cli(env["setup"], homes["setup"], "api-token", "create", "--org", ORG, "--as", OWNER)
        token = token.strip().splitlines()[-1]
        # The same organization in the CLI's own database (made with the library: quicker).
        cli_engine = open_database(cli_db)
        engines.append(cli_engine)
        create_organization(cli_engine, ORG, owner_email=OWNER, owner_name="Olive Owner")
        create_teams(cli_engine, ORG, list(datagen.TEAMS))
        headers = {"Authorization": f"Bearer {token}"}
        web1 = httpx.Client(base_url=f"http://127.0.0.1:{ports['web1']}", headers=headers, timeout=30)
        web2 = httpx.Client(base_url=f"http://127.0.0.1:{ports['web2']}", headers=headers, timeout=30)

        def answers(client: httpx.Client) -> Any:
            try:
                got = client.get("/api/v1/orgs")
            except httpx.TransportError:
                return None
            return got.json() if got.status_code == 200 else None

        orgs = wait_for(lambda: answers(web1), "web 1 did not start")
        wait_for(lambda: answers(web2), "web 2 did not start")
        org_id = orgs[0]["id"]

        # Upload through web 1; watch through web 2.
        with sheet.open("rb") as handle:
            accepted = web1.post(
                f"/api/v1/orgs/{org_id}/imports",
                files={"file": (sheet.name, handle, "text/csv")},
                data={"type": "portal"},
            )
        assert accepted.status_code == 202, accepted.text
        status_url = accepted.json()["status_url"]
        # The CLI imports the same file into the other database meanwhile.
        cli_env = environment(homes["cli"], cli_db, redis_url)
        cli_out, cli_err = homes["cli"] / "summary.json", homes["cli"] / "stderr.txt"
        with cli_out.open("wb") as out, cli_err.open("wb") as err:
            cli_import = subprocess.Popen(
                [IMPORTER, "import", str(sheet), "--org", ORG, "--as", OWNER, "--type", "portal", "--json",
                 "--report-dir", str(homes["cli"] / "reports")],
                env=cli_env, cwd=homes["cli"], stdout=out, stderr=err,
            )  # fmt: skip
        processes["cli"] = cli_import
        batch_id = accepted.json()["batch_id"]
        seen: list[int] = []

        def look() -> dict[str, Any]:
            state: dict[str, Any] = web2.get(status_url).json()
            rows = state["rows_done"]
            if state["status"] == "running" and 0 < rows < ROWS and (not seen or rows != seen[-1]):
                seen.append(rows)
            return state

        # The worker holding the job: its process id is in the job row (host:pid:thread).
        engine = open_database(portal_db)
        engines.append(engine)
        pids = {processes[name].pid: name for name in ("worker1", "worker2")}

        def holder() -> str | None:
            """Which of the two workers holds the job now."""
            with Session(engine) as session:
                worker = session.scalar(select(Job.worker).where(Job.batch_id == batch_id))
            return pids.get(int(worker.split(":")[1])) if worker else None

        victim = wait_for(holder, "no worker claimed the import")
        survivor = "worker2" if victim == "worker1" else "worker1"
        # Web 2 shows the rows rising (two counts between none and all) before the kill.
        wait_for(lambda: look() and len(seen) >= 2, "web 2 showed no rising progress")
        processes[victim].send_signal(signal.SIGKILL)
        processes[victim].wait()
        killed_at = look()
        assert killed_at["status"] == "running" and killed_at["rows_done"] < ROWS, "it ended before the kill"

        before_kill = list(seen)
        # The survivor claims the job once the lease runs out; its progress starts afresh.
        wait_for(lambda: holder() == survivor, "the other worker did not take the job over")
        seen.clear()

        state = wait_for(
            lambda: (s := look())["status"] in ("done", "failed") and s, "the import did not end"
        )
        assert cli_import.wait(timeout=DEADLINE) in (0, 3), cli_err.read_text()
        expected = json.loads(cli_out.read_text())
        assert state["status"] == "done", state
        assert (state["rows_done"], state["rows_total"]) == (ROWS, ROWS)
        # Web 2 saw the rows rise before the kill, and never fall on the other worker after it (how
        # many counts it catches there depends on the machine's speed).
        assert len(before_kill) >= 2 and before_kill == sorted(before_kill), before_kill
        assert seen == sorted(seen), seen
        with Session(engine) as session:
            job = session.scalars(select(Job).where(Job.batch_id == batch_id)).one()
            assert job.attempts == 2
        assert holder() == survivor
        assert without_run(state["summary"]) == without_run(expected)
        assert state["summary"]["created"] == expected["created"] > 0
        assert members_of(engine) == members_of(cli_engine)

        # Web 2 serves every report file, whichever worker made it.
        assert set(state["files"]) == set(REPORT_FILES)
        cli_reports = homes["cli"] / "reports" / expected["batch_id"]
        for name, kind in REPORT_FILES.items():
            got = web2.get(state["files"][name])
            assert got.status_code == 200 and got.headers["content-type"] == kind, name
            if name in ("errors.csv", "rejected.csv"):
                assert got.content == (cli_reports / name).read_bytes(), name
    finally:
        for used in engines:
            used.dispose()
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
