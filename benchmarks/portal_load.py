"""The portal under load, and an upload through the API against the CLI (issues 14 and 15).

    .venv/bin/python benchmarks/portal_load.py [--rows 1000000] [--clients 50] [--seconds 20]
        [--skip-load] [--skip-import] [--pg-url URL] [--redis-url URL]

(a) Load: `importer serve` out of the box (SQLite, its own worker) with an organization of 10,000
members and a finished import. CLIENTS concurrent clients (asyncio + httpx on loopback, each from its
own 127.0.0.x address and its own Admin account, as real users would be: the sign-in limits are per
address and per account) each sign in (GET /login, POST /login), then loop for SECONDS: the members
page, then the batch page polled three times (the page `/orgs/{id}/batches/{batch}` when this
build has it, else the API's progress of the same import). Requests per second and the p50/p95
latency of each kind are printed.

(b) Import: the ROWS-row sheet of benchmarks/data (datagen.py) through the API of `importer serve
--no-worker` with 1 and with 2 `importer worker` processes (PostgreSQL + Redis, a fresh database per
case), from the upload's first byte to the job's `done`, against `importer import` of the same
file into a fresh database, in the same run. The summaries must be equal.

The table goes to stdout and to benchmarks/out/portal.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datagen
import httpx
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from importer.accounts.audit import Acting, Channel
from importer.accounts.members import NewMember, add_member
from importer.activation.activating import activate
from importer.activation.tokens import hash_token, new_token
from importer.store.engine import open_database
from importer.store.models import ActivationToken, Member, utcnow

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
OUT = BENCH_DIR / "out" / "portal.md"
IMPORTER = str(Path(sys.executable).parent / "importer")
ORG = "Bench"
OWNER = "owner@bench.example"
PASSWORD = "Tangerine-Harbour-42"  # noqa: S105 - the benchmark accounts' password
LOAD_MEMBERS = 10_000
POLLS_PER_ROUND = 3
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [IMPORTER, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True, check=False
    )
    if done.returncode not in (0, 3):
        raise SystemExit(f"importer {' '.join(args[:2])}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def environment(home: Path, db_url: str, queue_url: str | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "IMPORTER_DATABASE_URL": db_url,
        "IMPORTER_SECRET_KEY": "bench-key-" + "k" * 40,
        "IMPORTER_BASE_URL": "http://127.0.0.1:8000",
    }
    if queue_url:
        env["IMPORTER_QUEUE_URL"] = queue_url
    return env


def make_org(env: dict[str, str], home: Path) -> str:
    """The organization, its Owner made active by the link `org create` prints, its teams, and an
    API token of the Owner (returned)."""
    created = run(env, home, "org", "create", ORG, "--owner-email", OWNER, "--owner-name", "Bench Owner")
    link = created.strip().splitlines()[-1]
    run(env, home, "activate", "--password-stdin", stdin=f"{link}\n{PASSWORD}\n")
    run(env, home, "team", "create", "--org", ORG, *datagen.TEAMS)
    return run(env, home, "api-token", "create", "--org", ORG, "--as", OWNER).strip().splitlines()[-1]


@contextmanager
def processes(*commands: tuple[list[str], dict[str, str], Path]) -> Iterator[list[subprocess.Popen[bytes]]]:
    started = [
        subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for command, env, cwd in commands
    ]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_up(url: str, token: str, deadline: float = 60) -> int:
    """The portal's first organization id, once the server answers."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            got = httpx.get(f"{url}/api/v1/orgs", headers={"Authorization": f"Bearer {token}"}, timeout=5)
            if got.status_code == 200:
                return int(got.json()[0]["id"])
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the portal at {url} did not start within {deadline} s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# --- (a) the portal under load ---------------------------------------------------------------------


def admins(db_url: str, count: int) -> list[str]:
    """`count` active Admin accounts of the organization (made with the library: untimed)."""
    engine = open_database(db_url)
    emails = [f"admin{n}@bench.example" for n in range(count)]
    for n, email in enumerate(emails):
        change = add_member(
            engine, ORG, acting=Acting(OWNER, Channel.ACCOUNT),
            member=NewMember(f"Admin {n}", email, "Admin", None, True, None),
        )  # fmt: skip
        assert not change.refused, change.errors
        token = new_token()
        with Session(engine) as session, session.begin():
            member_id = session.scalars(select(Member.id).where(Member.email == email)).one()
            expires = utcnow() + dt.timedelta(days=1)
            session.add(
                ActivationToken(member_id=member_id, token_hash=hash_token(token), expires_at=expires)
            )
        activate(engine, token, PASSWORD)
    engine.dispose()
    return emails


async def client_run(
    number: int, url: str, email: str, pages: dict[str, str], token: str, until: float
) -> dict[str, list[float]]:
    """One client from 127.0.0.(number+2): sign in, then members page + batch-page polls until `until`."""
    timings: dict[str, list[float]] = {"sign-in": [], "members page": [], "batch page": []}
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{number + 2}")
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=60) as client:
        started = time.perf_counter()
        login = await client.get("/login")
        csrf = _CSRF.search(login.text)
        assert csrf, "no CSRF token on /login"
        answer = await client.post(
            "/login", data={"csrf_token": csrf.group(1), "email": email, "password": PASSWORD}
        )
        assert answer.status_code == 303, (answer.status_code, answer.text[:200])
        timings["sign-in"].append(time.perf_counter() - started)
        headers = {"Authorization": f"Bearer {token}"} if pages["batch"].startswith("/api/") else {}
        while time.monotonic() < until:
            started = time.perf_counter()
            got = await client.get(pages["members"])
            assert got.status_code == 200, got.status_code
            timings["members page"].append(time.perf_counter() - started)
            for _ in range(POLLS_PER_ROUND):
                started = time.perf_counter()
                got = await client.get(pages["batch"], headers=headers)
                assert got.status_code == 200, got.status_code
                timings["batch page"].append(time.perf_counter() - started)
    return timings


def load(args: argparse.Namespace, work: Path) -> list[str]:
    """Case (a): rows of the table."""
    home = work / "load"
    home.mkdir()
    db_url = f"sqlite:///{home / 'portal.db'}"
    env = environment(home, db_url)
    token = make_org(env, home)
    sheet = datagen.ensure_csv(DATA_DIR, rows=LOAD_MEMBERS).path
    summary = json.loads(run(env, home, "import", str(sheet), "--org", ORG, "--as", OWNER, "--type", "portal",
                             "--json", "--report-dir", str(home / "reports")))  # fmt: skip
    emails = admins(db_url, args.clients)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with processes(([IMPORTER, "serve", "--port", str(port)], env, home)):
        org_id = wait_until_up(url, token)
        batch_page = f"/orgs/{org_id}/batches/{summary['batch_id']}"
        owner = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        pages = {"members": f"/orgs/{org_id}/members"}
        # The batch page when this build serves it; else the API's progress of the same import.
        probe = httpx.get(f"{url}{batch_page}", follow_redirects=False)
        pages["batch"] = batch_page if probe.status_code in (200, 303) else ""
        if not pages["batch"]:
            api_import = owner.post(
                f"/api/v1/orgs/{org_id}/imports",
                files={"file": ("small.csv", b"Name,Email,Role,Team\nAda,ada@x.example,Member,Sales\n")},
                data={"type": "portal"},
            ).json()
            pages["batch"] = api_import["status_url"]
        until = time.monotonic() + args.seconds

        async def everyone() -> list[dict[str, list[float]]]:
            return await asyncio.gather(
                *(client_run(n, url, email, pages, token, until) for n, email in enumerate(emails))
            )

        started = time.perf_counter()
        results = asyncio.run(everyone())
        elapsed = time.perf_counter() - started
    rows = []
    total = sum(len(v) for r in results for v in r.values())
    for kind in ("sign-in", "members page", "batch page"):
        values = [t for r in results for t in r[kind]]
        rows.append(
            f"| {kind} | {len(values):,} | {len(values) / elapsed:,.1f} | "
            f"{statistics.median(values) * 1000:,.0f} | {percentile(values, 0.95) * 1000:,.0f} |"
        )
    rows.append(f"| **all** | {total:,} | {total / elapsed:,.1f} | | |")
    batch_kind = "page" if pages["batch"] == batch_page else f"API progress ({pages['batch'].split('/')[-2]})"
    print(f"load: {args.clients} clients, {elapsed:.1f} s, batch {batch_kind}", flush=True)
    header = [
        f"Load: {args.clients} concurrent clients (each its own 127.0.0.x and Admin account), "
        f"{elapsed:.0f} s, `importer serve` on SQLite with {LOAD_MEMBERS:,} members; "
        f"batch polling via {'the batch page' if pages['batch'] == batch_page else 'the API progress'}.",
        "",
        "| request | count | per second | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    return header + rows


# --- (b) an upload through the API against the CLI --------------------------------------------------


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def without_run(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("batch_id", "report_dir")}


def cli_import(args: argparse.Namespace, work: Path, sheet: Path) -> tuple[float, dict[str, Any]]:
    home = work / "cli"
    home.mkdir()
    with fresh_database(args.pg_url) as db_url:
        env = environment(home, db_url)
        make_org(env, home)
        started = time.perf_counter()
        out = run(env, home, "import", str(sheet), "--org", ORG, "--as", OWNER, "--type", "portal", "--json",
                  "--report-dir", str(home / "reports"))  # fmt: skip
        return time.perf_counter() - started, json.loads(out)


def api_import(
    args: argparse.Namespace, work: Path, sheet: Path, workers: int
) -> tuple[float, dict[str, Any]]:
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    root = work / f"api-{workers}"
    homes = [root / name for name in ("setup", "web", *(f"worker{n}" for n in range(workers)))]
    for home in homes:
        home.mkdir(parents=True)
    with fresh_database(args.pg_url) as db_url:
        env = {home.name: environment(home, db_url, args.redis_url) for home in homes}
        token = make_org(env["setup"], homes[0])
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        commands = [([IMPORTER, "serve", "--no-worker", "--port", str(port)], env["web"], homes[1])]
        commands += [([IMPORTER, "worker"], env[home.name], home) for home in homes[2:]]
        with processes(*commands):
            org_id = wait_until_up(url, token)
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300)
            started = time.perf_counter()
            with sheet.open("rb") as handle:
                accepted = client.post(
                    f"/api/v1/orgs/{org_id}/imports",
                    files={"file": (sheet.name, handle, "text/csv")},
                    data={"type": "portal"},
                )
            if accepted.status_code != 202:
                raise SystemExit(f"upload: {accepted.status_code} {accepted.text}")
            while (state := client.get(accepted.json()["status_url"]).json())["status"] not in (
                "done",
                "failed",
            ):
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        if state["status"] != "done":
            raise SystemExit(f"the API import failed: {state['error']}")
        return elapsed, state["summary"]


def imports(args: argparse.Namespace, work: Path) -> list[str]:
    """Case (b): rows of the table."""
    sheet = datagen.ensure_csv(DATA_DIR, rows=args.rows).path
    cli_seconds, expected = cli_import(args, work, sheet)
    print(f"import: CLI {cli_seconds:.1f} s", flush=True)
    rows = [f"| `importer import` (CLI) | {cli_seconds:.1f} | {args.rows / cli_seconds:,.0f} | 1.00x |"]
    for workers in (1, 2):
        seconds, summary = api_import(args, work, sheet, workers)
        if without_run(summary) != without_run(expected):
            raise SystemExit(f"the API import's summary differs from the CLI's: {summary} vs {expected}")
        print(f"import: API with {workers} worker(s) {seconds:.1f} s", flush=True)
        rows.append(
            f"| API upload, `serve --no-worker` + {workers} `worker` | {seconds:.1f} | "
            f"{args.rows / seconds:,.0f} | {seconds / cli_seconds:.2f}x |"
        )
    return [
        f"Import of the {args.rows:,}-row sheet into PostgreSQL (Redis queue): the API from the upload's "
        "first byte to `done`, against the CLI, same run; the summaries are equal.",
        "",
        "| how | seconds | rows/s | vs CLI |",
        "|---|---:|---:|---:|",
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the API/CLI import sheet")
    parser.add_argument("--clients", type=int, default=50, help="concurrent portal clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the clients run")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "IMPORTER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin URL of the PostgreSQL server (databases are created and dropped)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("IMPORTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        help="a Redis database the benchmark may empty",
    )  # fmt: skip
    args = parser.parse_args()
    lines = [f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start.", ""]
    with tempfile.TemporaryDirectory(prefix="importer-portal-bench-") as folder:
        work = Path(folder)
        if not args.skip_load:
            lines += [*load(args, work), ""]
        if not args.skip_import:
            lines += [*imports(args, work), ""]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
