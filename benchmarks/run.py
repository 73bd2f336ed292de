"""`make bench`: the importer against its floors and peers, side by side, on the same sheets.

Every case runs as a child process in a fresh database; its wall time and its peak memory are
measured: the largest sum, over its whole process tree (the importer's checking worker included),
of each process's proportional set size (PSS: pages shared after a fork are counted once).
Generated sheets are cached in benchmarks/data/; the results table is printed and written to
benchmarks/out/results.md. The importer's own numbers are also checked for
correctness against what the generator knows it put in the file. Exit status 1 when a check
fails or a case crashes; a missed performance target is reported, not an error.

    python benchmarks/run.py [--rows N] [--quick] [--skip-postgres] [--only CASE,...] [--profile]
                             [--before [REV]] [--repeat N]

`--before REV` also times the importer of an earlier commit (a copy of it under benchmarks/out/,
with a virtualenv of its own), alternated with this checkout's, so before and after share a run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datagen
from peers import sqlite3_schema_floor as schema_floor

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
OUT_DIR = BENCH_DIR / "out"
PEERS_DIR = BENCH_DIR / "peers"
BIN = Path(sys.executable).parent
PYTHON = sys.executable
IMPORTER = str(BIN / "importer")
# The commit before the leaner members table (issue 13): what `--before` compares with by default.
DEFAULT_BEFORE = "a80d016"
ORG = "Bench"
OWNER = "owner@bench.example"
DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 50_000
SMALL_ROWS = 100_000
QUICK_SMALL_ROWS = 10_000
ACTIVATION_ROWS = 50_000  # enough that the process start (about 1 s) does not decide the rate
PROFILE_ROWS = 200_000
ACTIVATION_TARGET = 5_000  # emails per second (issue 4)
PROFILE_TOP = 25
DEFAULT_TIMEOUT = 600.0
MIB = 1024 * 1024
# Reading smaps_rollup walks a process's page tables under its memory lock: sampled every 20 ms it
# slowed a 1M-row import by about a second; every 200 ms it costs little, and memory moves slowly.
SAMPLE_SECONDS = 0.2
COUNT_BATCH_MEMBERS = "SELECT count(*) FROM members WHERE batch_id IS NOT NULL"

# The bare floor: csv.reader straight into sqlite3 executemany, one transaction, no checks.
FLOOR_SCRIPT = """
import csv, sqlite3, sys
con = sqlite3.connect(sys.argv[2])
con.execute("CREATE TABLE members (name TEXT, email TEXT, role TEXT, team TEXT)")
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    next(rows)
    with con:
        con.executemany("INSERT INTO members VALUES (?, ?, ?, ?)", rows)
con.close()
"""

# Documented limits of the SaaS peers (not runnable here), with where they are stated.
SAAS_NOTES = (
    (
        "Microsoft Entra ID",
        "API-driven inbound provisioning: at most 50 user records per /bulkUpload request and 40 "
        "requests per second, i.e. about 2,000 records/s (learn.microsoft.com/entra/identity/"
        "app-provisioning/inbound-provisioning-api-concepts). Admin-center bulk create may time "
        "out on large tenants and must finish within an hour; split large files "
        "(learn.microsoft.com/entra/fundamentals/bulk-operations-service-limitations).",
    ),
    (
        "Okta",
        "Workflows Bulk User Import: at most 10,000 users per import session (help.okta.com/wf/"
        "en-us/content/topics/workflows/connector-reference/okta/actions/bulkuserimport.htm). "
        "No rate measured: SaaS, not runnable here.",
    ),
)

CASE_KEYS = (
    "importer-sqlite",
    "importer-sqlite-before",
    "importer-pg",
    "importer-pg-before",
    "sqlite-utils",
    "sqlite3-floor",
    "sqlite3-schema-floor",
    "psql-copy",
    "psql-schema-floor",
    "importer-xlsx",
    "importer-csv-small",
    "frictionless",
    "django",
    "send-activations",
)


class CheckFailedError(Exception):
    """A correctness check of a case failed."""


class TimedOutError(Exception):
    """A case ran past --timeout and was killed: a performance finding, not a correctness failure."""


@dataclass(slots=True)
class Child:
    """A measured child process."""

    seconds: float
    max_rss_mib: float
    code: int
    cpu_seconds: float  # user + system of the child and the children it waited for
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass(slots=True)
class Case:
    """One row of the results table."""

    key: str
    label: str
    rows: int | None = None
    seconds: float | None = None
    max_rss_mib: float | None = None
    note: str = ""
    skipped: str | None = None
    failed: str | None = None
    timed_out: bool = False
    times: list[float] = field(default_factory=list)  # every run's seconds (`seconds` is their median)
    cpu_times: list[float] = field(default_factory=list)  # every run's CPU seconds (client side)

    @property
    def rows_per_second(self) -> float | None:
        """Throughput, when the case ran."""
        if self.rows is None or not self.seconds:
            return None
        return self.rows / self.seconds

    @property
    def ran(self) -> bool:
        """Whether the case has a time to compare (a lower bound when it timed out)."""
        return self.skipped is None and self.failed is None and self.seconds is not None


@dataclass(slots=True)
class Postgres:
    """The PostgreSQL server the PostgreSQL cases use (trust auth): one fresh database per case."""

    host: str
    port: int
    user: str
    admin_db: str

    def uri(self, database: str) -> str:
        """A libpq URI for psql."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        """The URL the importer takes."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def psql(self, database: str, command: str) -> str:
        """Run one psql command; return its unaligned, tuples-only output."""
        done = subprocess.run(
            ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", self.uri(database), "-c", command],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {command!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def version(self) -> str | None:
        """The server's version, or None when it cannot be reached."""
        try:
            return self.psql(self.admin_db, "SHOW server_version")
        except (RuntimeError, OSError):
            return None

    @contextlib.contextmanager
    def fresh_database(self, name: str) -> Iterator[str]:
        """CREATE DATABASE name; DROP it afterwards (even when the case fails)."""
        self.psql(self.admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.psql(self.admin_db, f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            with contextlib.suppress(RuntimeError, OSError):
                self.psql(self.admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(
    command: Sequence[str], *, log: Path, cwd: Path | None = None, timeout: float | None = None
) -> Child:
    """Run a child process; its wall time and its peak memory (the larger of its own ru_maxrss and
    the sampled peak of its process tree's summed PSS).

    Past `timeout` seconds the child is killed (SIGKILL) and the Child says it timed out.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    killed = threading.Event()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, cwd=cwd)

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer is not None:
            timer.start()
        sampler = TreeMemory(process.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            if timer is not None:
                timer.cancel()
            sampler.stop()
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Child(
        seconds=seconds,
        max_rss_mib=max(usage.ru_maxrss / 1024, sampler.peak_mib),
        code=process.returncode,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        timed_out=killed.is_set(),
    )


class TreeMemory(threading.Thread):
    """Samples a process tree's summed PSS every SAMPLE_SECONDS (Linux /proc); keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_mib = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            total = sum(_pss_kib(pid) for pid in _tree(self.pid))
            self.peak_mib = max(self.peak_mib, total / 1024)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(pid: int) -> list[int]:
    """A process and its descendants (empty once it has exited)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending.extend(int(c) for c in children)
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_quietly(command: Sequence[str]) -> str:
    """Run an untimed set-up step; raise with its stderr when it fails."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ...: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def import_command(db_url: str, sheet: Path, *, report_dir: Path, importer: str = IMPORTER) -> list[str]:
    """`importer import` of a Portal Access sheet as the benchmark's Owner, with a JSON summary."""
    return [
        *(importer, "--db", db_url, "import", str(sheet), "--org", ORG, "--as", OWNER),
        *("--type", "portal", "--json", "--report-dir", str(report_dir)),
    ]


def setup_org(db_url: str, importer: str = IMPORTER) -> None:
    """The benchmark's organization, its Owner made active by the link `org create` prints (as a
    person would follow it), and its teams (untimed)."""
    created = run_quietly(
        [
            *(importer, "--db", db_url, "org", "create", ORG),
            *("--owner-email", OWNER, "--owner-name", "Bench Owner", "--base-url", "http://127.0.0.1:8000"),
        ]
    )
    link = created.strip().splitlines()[-1]
    done = subprocess.run(
        [importer, "--db", db_url, "activate", "--password-stdin"],
        input=f"{link}\nTangerine-Harbour-42\n", capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"importer activate ...: exit {done.returncode}: {done.stderr.strip()}")
    run_quietly([importer, "--db", db_url, "team", "create", "--org", ORG, *datagen.TEAMS])


def prepare_before(revision: str) -> tuple[str, str]:
    """The importer of an earlier commit, ready to run: (its `importer` binary, its short commit).

    The commit's files (git archive) go to benchmarks/out/before-COMMIT/ with a virtualenv of their
    own (`pip install -e .`, from pip's cache as `make venv` fills it); made once, then reused.
    """
    root = BENCH_DIR.parent
    commit = run_quietly(
        ["git", "-C", str(root), "rev-parse", "--short=10", f"{revision}^{{commit}}"]
    ).strip()
    folder = OUT_DIR / f"before-{commit}"
    importer = folder / ".venv" / "bin" / "importer"
    ready = folder / ".ready"
    if ready.exists() and importer.exists():
        return str(importer), commit
    print(f"before: preparing the importer at {commit} in {folder.relative_to(root)} ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", commit], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {commit}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    run_quietly([sys.executable, "-m", "venv", str(folder / ".venv")])
    run_quietly(
        [str(folder / ".venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(folder)]
    )
    ready.write_text(commit + "\n", encoding="utf-8")
    return str(importer), commit


def source_revision() -> str | None:
    """The checkout's commit, marked when importer/ has uncommitted changes (read-only git)."""
    root = BENCH_DIR.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "importer", "schemas"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def work_dir() -> Path:
    """This run's scratch folder (databases, logs, reports): one per process, so runs can overlap."""
    return OUT_DIR / "work" / str(os.getpid())


def size_label(rows: int) -> str:
    """1M, 100k, 12,345."""
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return f"{rows:,}"


def sqlite_count(path: Path, sql: str, *params: Any) -> int:
    """One integer from a SQLite database."""
    with contextlib.closing(sqlite3.connect(path)) as con:
        (value,) = con.execute(sql, params).fetchone()
    return int(value)


def remove_sqlite(path: Path) -> None:
    """A SQLite database and its WAL files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def last_json_line(text: str) -> dict[str, Any]:
    """The JSON object a child printed (the last line that parses as one)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
    raise CheckFailedError(f"no JSON object in the output: {text[-500:]!r}")


def importer_help_works(command: str) -> bool:
    """Whether `importer COMMAND --help` exits 0 (a command another change may not have added yet)."""
    done = subprocess.run([IMPORTER, command, "--help"], capture_output=True, text=True, check=False)
    return done.returncode == 0


def module_available(name: str) -> bool:
    """Whether the venv can import a peer package."""
    done = subprocess.run([PYTHON, "-c", f"import {name}"], capture_output=True, check=False)
    return done.returncode == 0


class Benchmark:
    """Runs the cases, keeps their results, checks the importer's answers."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: int = args.rows
        self.small_rows: int = min(args.small_rows, self.rows)
        self.work = work_dir()
        self.cases: dict[str, Case] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.postgres = Postgres(args.pg_host, args.pg_port, args.pg_user, args.pg_admin_db)
        self.pg_version: str | None = None
        # Other work on a 2-core machine slows every case; the table says how busy it was.
        self.load_at_start = os.getloadavg()[0]
        self.before: tuple[str, str] | None = None  # (importer binary, commit) of --before
        self.only: set[str] = set(args.only.split(",")) if args.only else set(CASE_KEYS)
        if args.before is None:
            self.only -= {"importer-sqlite-before", "importer-pg-before"}
        unknown = self.only - set(CASE_KEYS)
        if unknown:
            raise SystemExit(
                f"--only: unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASE_KEYS)}"
            )

    # --- data ------------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Generate (or reuse) the big CSV, the small CSV and the small XLSX."""
        self.big = self.dataset(datagen.ensure_csv, self.rows)
        self.small_csv = self.dataset(datagen.ensure_csv, self.small_rows)
        self.small_xlsx = self.dataset(datagen.ensure_xlsx, self.small_rows)

    def dataset(self, make: Callable[..., datagen.Dataset], rows: int) -> datagen.Dataset:
        """One generated sheet, with a line saying whether it was made or reused."""
        started = time.perf_counter()
        dataset = make(DATA_DIR, rows=rows, seed=self.args.seed)
        print(
            f"data: {'generated' if dataset.generated else 'reused'} "
            f"{dataset.path.relative_to(BENCH_DIR.parent)} ({rows:,} rows, "
            f"{dataset.path.stat().st_size / MIB:.1f} MiB, {dataset.expected['rejected']:,} rows to reject) "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        return dataset

    # --- running ---------------------------------------------------------------------------------

    def case(self, key: str, label: str, body: Callable[[Case], None], *, skip: str | None = None) -> None:
        """Run one case body, recording a skip, a crash or a failed check instead of stopping."""
        if key not in self.only:
            return
        previous = self.cases.get(key)
        case = self.cases[key] = Case(key=key, label=label)
        if skip:
            case.skipped = skip
            print(f"  {label}: skipped ({skip})", flush=True)
            return
        print(f"  {label} ...", end="", flush=True)
        try:
            body(case)
        except TimedOutError:
            case.timed_out = True
            case.note = f"killed after {self.args.timeout:g} s (--timeout): did not finish"
            self.notes.append(
                f"{label}: did not finish within {self.args.timeout:g} s; its time is a lower bound."
            )
        except CheckFailedError as exc:
            case.failed = str(exc)
            self.problems.append(f"{label}: {exc}")
        except (RuntimeError, OSError, sqlite3.Error) as exc:
            case.failed = f"crashed: {exc}"
            self.problems.append(f"{label}: {exc}")
        if previous is not None and previous.ran and case.ran and case.seconds is not None:
            # A repeated case (--repeat): the table shows the median run, the note every run.
            case.times = [*previous.times, case.seconds]
            case.cpu_times = [*previous.cpu_times, *case.cpu_times]
            case.seconds = statistics.median(case.times)
            case.max_rss_mib = max(previous.max_rss_mib or 0, case.max_rss_mib or 0)
            case.timed_out = case.timed_out or previous.timed_out
        elif case.ran and case.seconds is not None:
            case.times = [case.seconds]
        if case.failed:
            print(f" FAILED: {case.failed}", flush=True)
        else:
            rate = case.rows_per_second
            print(
                f" {case.times[-1] if case.times else case.seconds or 0:.2f} s, {rate or 0:,.0f} rows/s, "
                f"{case.max_rss_mib:.0f} MiB" + (f" ({case.note})" if case.note else ""),
                flush=True,
            )

    def measure(
        self, case: Case, command: Sequence[str], *, rows: int, log: str, cwd: Path | None = None
    ) -> Child:
        """Time one child for a case and record rows, seconds and peak memory; raise if it timed out."""
        child = measure(command, log=self.work / case.key / log, cwd=cwd, timeout=self.args.timeout)
        case.rows, case.seconds, case.max_rss_mib = rows, child.seconds, child.max_rss_mib
        case.cpu_times = [child.cpu_seconds]
        if child.timed_out:
            raise TimedOutError
        return child

    def run_importer(
        self,
        case: Case,
        *,
        db_url: str,
        dataset: datagen.Dataset,
        count_members: Callable[[], int],
        importer: str = IMPORTER,
    ) -> dict[str, Any]:
        """Set up the org, time `importer import`, check its summary and the rows it wrote."""
        setup_org(db_url, importer)
        report_dir = self.work / case.key / "reports"
        child = self.measure(
            case,
            import_command(db_url, dataset.path, report_dir=report_dir, importer=importer),
            rows=dataset.rows,
            log="importer",
        )
        if child.code not in (0, 3):
            raise CheckFailedError(f"importer exited {child.code}: {child.stderr.strip()[-500:]}")
        summary = last_json_line(child.stdout)
        self.check_summary(summary, dataset=dataset, exit_code=child.code)
        written = count_members()  # members with a batch: the owner has none, and this is the only batch
        if written != summary["created"]:
            raise CheckFailedError(
                f"{written} members in the database for the batch, summary says {summary['created']}"
            )
        share = summary["rejected"] / summary["rows"]
        case.note = f"{summary['created']:,} created, {summary['rejected']:,} rejected ({share:.1%})"
        if not self.args.keep:
            shutil.rmtree(report_dir, ignore_errors=True)
        return summary

    def check_summary(self, summary: dict[str, Any], *, dataset: datagen.Dataset, exit_code: int) -> None:
        """created + skipped + rejected == rows; the counts the generator expects; ~2% rejected."""
        expected = dataset.expected
        rows, created, skipped, rejected = (summary[k] for k in ("rows", "created", "skipped", "rejected"))
        problems = []
        if created + skipped + rejected != rows:
            problems.append(f"created {created} + skipped {skipped} + rejected {rejected} != rows {rows}")
        if rows != expected["rows"]:
            problems.append(f"rows {rows}, the file has {expected['rows']}")
        if skipped != 0:
            problems.append(f"{skipped} skipped on a fresh organization")
        if rejected != expected["rejected"]:
            problems.append(f"rejected {rejected}, expected {expected['rejected']}")
        if summary.get("errors_by_code") != expected["errors_by_code"]:
            problems.append(
                f"errors_by_code {summary.get('errors_by_code')}, expected {expected['errors_by_code']}"
            )
        if not 0.01 <= rejected / max(rows, 1) <= 0.03:
            problems.append(f"rejected share {rejected / max(rows, 1):.2%} is not about 2%")
        if exit_code != (3 if rejected else 0):
            problems.append(f"exit status {exit_code} with {rejected} rejected rows")
        if problems:
            raise CheckFailedError("; ".join(problems))

    # --- the cases -------------------------------------------------------------------------------

    def importer_sqlite(self, case: Case, dataset: datagen.Dataset, importer: str = IMPORTER) -> None:
        """importer -> a fresh SQLite file."""
        path = self.work / f"{case.key}.db"
        remove_sqlite(path)
        try:
            self.run_importer(
                case,
                db_url=f"sqlite:///{path}",
                dataset=dataset,
                count_members=lambda: sqlite_count(path, COUNT_BATCH_MEMBERS),
                importer=importer,
            )
        finally:
            if not self.args.keep:
                remove_sqlite(path)

    def importer_postgres(self, case: Case, importer: str = IMPORTER) -> None:
        """importer -> a fresh PostgreSQL database."""
        with self.postgres.fresh_database(f"bench_{os.getpid()}_importer") as database:

            def count() -> int:
                return int(self.postgres.psql(database, COUNT_BATCH_MEMBERS))

            self.run_importer(
                case,
                db_url=self.postgres.sqlalchemy_url(database),
                dataset=self.big,
                count_members=count,
                importer=importer,
            )
        case.note += "; client memory only"

    def sqlite_utils(self, case: Case) -> None:
        """sqlite-utils insert --csv: a loader that does not validate."""
        path = self.work / f"{case.key}.db"
        remove_sqlite(path)
        try:
            child = self.measure(
                case,
                [str(BIN / "sqlite-utils"), "insert", str(path), "members", str(self.big.path), "--csv"],
                rows=self.big.rows,
                log="sqlite-utils",
            )
            self.expect_loaded(case, child, sqlite_count(path, "SELECT count(*) FROM members"))
        finally:
            remove_sqlite(path)

    def sqlite3_floor(self, case: Case) -> None:
        """csv.reader -> sqlite3 executemany, one transaction: the SQLite floor."""
        path = self.work / f"{case.key}.db"
        remove_sqlite(path)
        try:
            child = self.measure(
                case,
                [PYTHON, "-c", FLOOR_SCRIPT, str(self.big.path), str(path)],
                rows=self.big.rows,
                log="floor",
            )
            self.expect_loaded(case, child, sqlite_count(path, "SELECT count(*) FROM members"))
        finally:
            remove_sqlite(path)

    def seed_batch(self, case: Case, db_url: str) -> None:
        """Untimed, for a floor on the importer's own table: the importer makes the schema, the
        organization, its teams and, importing one row, the batch the floor's rows belong to."""
        seed = self.work / case.key / "seed.csv"
        seed.parent.mkdir(parents=True, exist_ok=True)
        seed.write_text("Name,Email,Role,Team\nSeed Row,seed@bench.example,Member,\n", encoding="utf-8")
        setup_org(db_url)
        subprocess.run(
            import_command(db_url, seed, report_dir=self.work / case.key / "reports"),
            capture_output=True,
            check=True,
        )

    def sqlite3_schema_floor(self, case: Case) -> None:
        """csv.reader -> executemany into the importer's own members table, checking nothing."""
        path = self.work / f"{case.key}.db"
        remove_sqlite(path)
        try:
            self.seed_batch(case, f"sqlite:///{path}")
            child = self.measure(
                case,
                [PYTHON, str(PEERS_DIR / "sqlite3_schema_floor.py"), str(self.big.path), str(path)],
                rows=self.big.rows,
                log="schema-floor",
            )
            if child.code != 0:
                raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
            by_code = self.big.expected["errors_by_code"]
            if not isinstance(by_code, dict):
                raise CheckFailedError("the data set's record has no errors_by_code")
            # Each duplicated address loses its second copy; a few invalid addresses made from a
            # name (no row number in them) may collide too: the importer rejects those anyway.
            most = self.big.rows - int(by_code.get("email.duplicate_in_file", 0)) // 2
            least = most - int(by_code.get("email.invalid", 0))
            loaded = int(last_json_line(child.stdout)["loaded"]) - 1  # less the seed row
            if not least <= loaded <= most:
                raise CheckFailedError(f"{loaded:,} rows loaded, expected {least:,} to {most:,}")
            case.note = (
                "no validation; same table, indexes, WAL and insert as the importer (sorted chunks, "
                "64 MiB cache, no per-row foreign-key look-up); second copies of an address dropped"
            )
        finally:
            remove_sqlite(path)

    def psql_copy(self, case: Case) -> None:
        r"""psql \copy into a plain table: the PostgreSQL floor."""
        with self.postgres.fresh_database(f"bench_{os.getpid()}_copy") as database:
            self.postgres.psql(database, "CREATE TABLE members (name text, email text, role text, team text)")
            copy = (
                rf"\copy members (name, email, role, team) FROM '{self.big.path}' "
                "WITH (FORMAT csv, HEADER true)"
            )
            child = self.measure(
                case,
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.postgres.uri(database), "-c", copy],
                rows=self.big.rows,
                log="psql",
            )
            self.expect_loaded(case, child, int(self.postgres.psql(database, "SELECT count(*) FROM members")))
        case.note += "; client memory only"

    def psql_schema_floor(self, case: Case) -> None:
        r"""psql \copy into the importer's own members table: what PostgreSQL itself costs."""
        rows_path = self.work / case.key / "members.csv"
        with self.postgres.fresh_database(f"bench_{os.getpid()}_schema_copy") as database:
            self.seed_batch(case, self.postgres.sqlalchemy_url(database))
            org = int(self.postgres.psql(database, "SELECT id FROM organizations"))
            batch = self.postgres.psql(database, "SELECT id FROM batches")
            teams = {
                key: int(team_id)
                for team_id, key in (
                    line.split("|")
                    for line in self.postgres.psql(database, "SELECT id, name_key FROM teams").split()
                )
            }
            # Untimed: the rows in the table's layout, second copies of an address dropped (COPY
            # has no ON CONFLICT), written as CSV for psql.
            seen: set[str] = set()
            with rows_path.open("w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                for row in schema_floor.member_rows(str(self.big.path), org=org, batch=batch, teams=teams):
                    if row[4] not in seen:
                        seen.add(str(row[4]))
                        writer.writerow([r"\N" if v is None else v for v in row])
            copy = (
                rf"\copy members ({schema_floor.COLUMNS}) FROM '{rows_path}' "
                r"WITH (FORMAT csv, NULL '\N')"
            )
            child = self.measure(
                case,
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.postgres.uri(database), "-c", copy],
                rows=len(seen),
                log="psql-schema",
            )
            if child.code != 0:
                raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
            loaded = int(self.postgres.psql(database, COUNT_BATCH_MEMBERS)) - 1  # less the seed row
            if loaded != len(seen):
                raise CheckFailedError(f"{loaded:,} rows loaded, expected {len(seen):,}")
        rows_path.unlink(missing_ok=True)
        case.note = (
            "no validation; the importer's own table, indexes and foreign keys; second copies of an "
            "address dropped beforehand; client memory only"
        )

    def expect_loaded(self, case: Case, child: Child, count: int) -> None:
        """A non-validating loader must exit 0 and load every data row."""
        if child.code != 0:
            raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
        if count != self.big.rows:
            raise CheckFailedError(f"{count:,} rows loaded, the file has {self.big.rows:,}")
        case.note = "no validation"

    def frictionless(self, case: Case) -> None:
        """frictionless validate with a Table Schema: validation only, nothing loaded."""
        dataset = self.big if self.args.frictionless_rows is None else self.frictionless_dataset()
        child = self.measure(
            case,
            [PYTHON, str(PEERS_DIR / "frictionless_validate.py"), str(dataset.path), *datagen.TEAMS],
            rows=dataset.rows,
            log="frictionless",
        )
        if child.code != 0:
            raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
        result = last_json_line(child.stdout)
        if result.get("rows") != dataset.rows:
            raise CheckFailedError(f"validated {result.get('rows')} rows, the file has {dataset.rows}")
        case.note = f"validation only; {result['invalid_rows']:,} invalid rows (case-sensitive unique)"

    def frictionless_dataset(self) -> datagen.Dataset:
        rows = min(self.args.frictionless_rows, self.rows)
        return datagen.ensure_csv(DATA_DIR, rows=rows, seed=self.args.seed)

    def django(self, case: Case) -> None:
        """django-import-export: a ModelResource with full_clean into SQLite, the small CSV."""
        path = self.work / f"{case.key}.db"
        remove_sqlite(path)
        dataset = self.small_csv
        try:
            child = self.measure(
                case,
                [PYTHON, str(PEERS_DIR / "django_import.py"), str(dataset.path), str(path)],
                rows=dataset.rows,
                log="django",
                cwd=PEERS_DIR,
            )
            if child.code != 0:
                raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
            result = last_json_line(child.stdout)
            if result.get("rows") != dataset.rows:
                raise CheckFailedError(f"imported {result.get('rows')} rows, the file has {dataset.rows}")
            totals = result.get("totals", {})
            case.note = (
                f"{totals.get('new', 0):,} new, {totals.get('update', 0):,} updated (duplicates), "
                f"{result['invalid']:,} invalid; row by row"
            )
        finally:
            remove_sqlite(path)

    def send_activations(self, case: Case) -> None:
        """send-activations to the file transport, after an untimed import of a small sheet."""
        rows = min(self.args.activation_rows, self.rows)
        dataset = datagen.ensure_csv(DATA_DIR, rows=rows, seed=self.args.seed)
        path = self.work / f"{case.key}.db"
        outbox = self.work / case.key / "outbox"
        remove_sqlite(path)
        shutil.rmtree(outbox, ignore_errors=True)
        db_url = f"sqlite:///{path}"
        try:
            setup_org(db_url)
            done = subprocess.run(
                import_command(db_url, dataset.path, report_dir=self.work / case.key / "reports"),
                capture_output=True,
                text=True,
                check=False,
            )
            created = int(last_json_line(done.stdout)["created"])
            child = self.measure(
                case,
                [
                    *(IMPORTER, "--db", db_url, "send-activations", "--org", ORG, "--transport", "file"),
                    *("--outbox", str(outbox), "--from", f"{ORG} <no-reply@bench.example>"),
                    *("--base-url", "https://portal.bench.example", "--json"),
                ],
                rows=created,
                log="send-activations",
            )
            if child.code != 0:
                raise CheckFailedError(f"exit {child.code}: {child.stderr.strip()[-500:]}")
            result = last_json_line(child.stdout)
            sent = int(result.get("sent", -1))
            messages = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
            case.rows = sent
            if sent != created or messages != sent:
                raise CheckFailedError(f"sent {sent}, {messages} .eml files, {created} pending members")
            case.note = "emails (file transport); rows/s = emails/s"
        finally:
            if not self.args.keep:
                remove_sqlite(path)
                shutil.rmtree(self.work / case.key, ignore_errors=True)

    # --- all of it -------------------------------------------------------------------------------

    def run(self) -> None:
        """Every case, in order."""
        pg_skip = "--skip-postgres" if self.args.skip_postgres else None
        if (
            pg_skip is None
            and {"importer-pg", "importer-pg-before", "psql-copy", "psql-schema-floor"} & self.only
        ):
            self.pg_version = self.postgres.version()
            if self.pg_version is None:
                pg_skip = f"no PostgreSQL server at {self.postgres.host}:{self.postgres.port}"
        big, small = size_label(self.rows), size_label(self.small_rows)
        self.big_label, self.small_label = big, small
        print(f"cases ({big} rows; small sheets {small} rows):", flush=True)
        self.work.mkdir(parents=True, exist_ok=True)
        before_skip = None
        if {"importer-sqlite-before", "importer-pg-before"} & self.only:
            try:
                self.before = prepare_before(self.args.before)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                before_skip = f"the importer at {self.args.before} could not be prepared: {exc}"
        before_bin, before_commit = self.before or (IMPORTER, str(self.args.before))
        # Before and after alternate, `--repeat` times, with the floors they are compared with, so
        # that a burst of load elsewhere on the machine falls on both sides.
        for _ in range(self.args.repeat):
            self.case(
                "importer-sqlite-before",
                f"importer at {before_commit} (before) -> SQLite ({big} CSV)",
                lambda c: self.importer_sqlite(c, self.big, before_bin),
                skip=before_skip,
            )
            self.case(
                "importer-sqlite",
                f"importer -> SQLite ({big} CSV)",
                lambda c: self.importer_sqlite(c, self.big),
            )
            self.case("sqlite3-floor", f"csv -> sqlite3 executemany, floor ({big})", self.sqlite3_floor)
            self.case(
                "importer-pg-before",
                f"importer at {before_commit} (before) -> PostgreSQL ({big} CSV)",
                lambda c: self.importer_postgres(c, before_bin),
                skip=pg_skip or before_skip,
            )
            self.case(
                "importer-pg", f"importer -> PostgreSQL ({big} CSV)", self.importer_postgres, skip=pg_skip
            )
            self.case(
                "psql-schema-floor",
                f"psql \\copy -> importer's members table, floor ({big})",
                self.psql_schema_floor,
                skip=pg_skip,
            )
        self.case("sqlite-utils", f"sqlite-utils insert --csv ({big})", self.sqlite_utils)
        self.case(
            "sqlite3-schema-floor",
            f"csv -> importer's members table, floor ({big})",
            self.sqlite3_schema_floor,
        )
        self.case("psql-copy", f"psql \\copy, floor ({big})", self.psql_copy, skip=pg_skip)
        self.case(
            "importer-xlsx",
            f"importer -> SQLite ({small} XLSX)",
            lambda c: self.importer_sqlite(c, self.small_xlsx),
        )
        self.case(
            "importer-csv-small",
            f"importer -> SQLite ({small} CSV)",
            lambda c: self.importer_sqlite(c, self.small_csv),
        )
        frictionless_skip = None if module_available("frictionless") else "frictionless is not installed"
        fr_rows = (
            self.rows if self.args.frictionless_rows is None else min(self.args.frictionless_rows, self.rows)
        )
        self.case(
            "frictionless",
            f"frictionless validate ({fr_rows:,} CSV)",
            self.frictionless,
            skip=frictionless_skip,
        )
        django_skip = None if module_available("import_export") else "django-import-export is not installed"
        self.case("django", f"django-import-export -> SQLite ({small} CSV)", self.django, skip=django_skip)
        activation_skip = (
            None
            if importer_help_works("send-activations")
            else "`importer send-activations --help` does not work in this checkout yet"
        )
        activation_rows = min(self.args.activation_rows, self.rows)
        self.case(
            "send-activations",
            f"send-activations, file ({activation_rows:,} members)",
            self.send_activations,
            skip=activation_skip,
        )
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    # --- the table -------------------------------------------------------------------------------

    def ratios(self) -> list[tuple[str, str, str, str]]:
        """(what, value, target, verdict) for each target of issues 4, 13 and 15."""

        def timing(key: str) -> tuple[float, bool] | None:
            case = self.cases.get(key)
            if case is None or not case.ran or case.seconds is None:
                return None
            return case.seconds, case.timed_out

        def ratio(
            what: str, top: str, bottom: str, target: float, *, at_most: bool
        ) -> tuple[str, str, str, str]:
            a, b = timing(top), timing(bottom)
            sign = "<=" if at_most else ">="
            if a is None or b is None or (a[1] and b[1]):
                return what, "n/a", f"{sign} {target:g}x", "n/a"
            value = a[0] / b[0]
            if not a[1] and not b[1]:
                met = value <= target if at_most else value >= target
                return what, f"{value:.2f}x", f"{sign} {target:g}x", "met" if met else "MISSED"
            # A killed case gives a bound: a killed numerator means the ratio is at least `value`,
            # a killed denominator that it is at most `value`.
            at_least = a[1]
            shown = f"{'>' if at_least else '<'} {value:.2f}x"
            unknown = "n/a (timeout)"
            if at_least:
                verdict = (
                    ("MISSED" if value > target else unknown)
                    if at_most
                    else ("met" if value >= target else unknown)
                )
            else:
                verdict = (
                    ("met" if value <= target else unknown)
                    if at_most
                    else ("MISSED" if value < target else unknown)
                )
            return what, shown, f"{sign} {target:g}x", verdict

        def info(what: str, top: str, bottom: str) -> tuple[str, str, str, str]:
            a, b = timing(top), timing(bottom)
            if a is None or b is None or a[1] or b[1]:
                return what, "n/a", "(no target)", "info"
            return what, f"{a[0] / b[0]:.2f}x", "(no target)", "info"

        big, small = self.big_label, self.small_label
        rows = [
            ratio(
                f"importer->SQLite / bare sqlite3 floor ({big})",
                "importer-sqlite",
                "sqlite3-floor",
                3.0,
                at_most=True,
            ),
            info(
                f"importer->SQLite / floor on the importer's own table ({big})",
                "importer-sqlite",
                "sqlite3-schema-floor",
            ),
            ratio(
                f"sqlite-utils / importer->SQLite ({big}; importer faster by)",
                "sqlite-utils",
                "importer-sqlite",
                3.0,
                at_most=False,
            ),
            ratio(
                f"importer->PostgreSQL / psql \\copy ({big})", "importer-pg", "psql-copy", 3.0, at_most=True
            ),
            ratio(
                f"importer->PostgreSQL / psql \\copy into the importer's own table ({big})",
                "importer-pg",
                "psql-schema-floor",
                1.2,
                at_most=True,
            ),
            info(
                f"before / after, importer->SQLite ({big}; after faster by)",
                "importer-sqlite-before",
                "importer-sqlite",
            ),
            info(f"sqlite-utils / importer before ({big})", "sqlite-utils", "importer-sqlite-before"),
            info(f"importer before / bare sqlite3 floor ({big})", "importer-sqlite-before", "sqlite3-floor"),
            info(f"before / after, importer->PostgreSQL ({big})", "importer-pg-before", "importer-pg"),
            info(
                f"importer before->PostgreSQL / psql \\copy into the importer's own table ({big})",
                "importer-pg-before",
                "psql-schema-floor",
            ),
            ratio(
                f"XLSX / CSV ({small}, importer->SQLite)",
                "importer-xlsx",
                "importer-csv-small",
                1.5,
                at_most=True,
            ),
        ]
        sent = self.cases.get("send-activations")
        if sent is not None and sent.ran and sent.rows_per_second is not None:
            rate = sent.rows_per_second
            verdict = "met" if rate >= ACTIVATION_TARGET and not sent.timed_out else "MISSED"
            rows.append(
                (
                    f"send-activations, file transport ({sent.rows:,} emails; process start included)",
                    f"{rate:,.0f}/s",
                    f">= {ACTIVATION_TARGET:,}/s",
                    verdict,
                )
            )
        memory = [
            (c.max_rss_mib, c.timed_out)
            for k in ("importer-sqlite", "importer-pg")
            if (c := self.cases.get(k)) is not None and c.ran and c.max_rss_mib is not None
        ]
        if memory:
            peak, partial = max(memory)
            verdict = "MISSED" if peak > 400 else "n/a (timeout)" if partial else "met"
            rows.append(
                (
                    f"importer peak memory ({big} CSV, all processes)",
                    f"{'>= ' if partial else ''}{peak:.0f} MiB",
                    "<= 400 MiB",
                    verdict,
                )
            )
        else:
            rows.append((f"importer peak memory ({big} CSV, all processes)", "n/a", "<= 400 MiB", "n/a"))
        return rows

    def markdown(self) -> str:
        """The results as Markdown: cases, ratios against the targets, peers we cannot run."""
        lines = [
            "| case | rows | wall s | rows/s | CPU s | peak memory MiB | notes |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for case in self.cases.values():
            if case.skipped:
                lines.append(f"| {case.label} | | | | | | skipped: {case.skipped} |")
            elif case.failed and case.seconds is None:
                lines.append(f"| {case.label} | | | | | | FAILED: {case.failed} |")
            else:
                rate = case.rows_per_second
                note = f"FAILED: {case.failed}" if case.failed else case.note
                if len(case.times) > 1:
                    note = (
                        f"median of {len(case.times)}: {', '.join(f'{t:.2f}' for t in case.times)} s; {note}"
                    )
                over, under = (">", "<") if case.timed_out else ("", "")
                cells = (
                    case.label,
                    f"{case.rows or 0:,}",
                    f"{over}{case.seconds or 0:.2f}",
                    f"{under}{rate or 0:,.0f}",
                    f"{statistics.median(case.cpu_times):.1f}" if case.cpu_times else "",
                    f"{over}{case.max_rss_mib or 0:.0f}",
                    note,
                )
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| ratio | value | target | |", "|---|---:|---:|---|"]
        lines += [
            f"| {what} | {value} | {target} | {verdict} |" for what, value, target, verdict in self.ratios()
        ]
        lines += ["", "| peer | not runnable here (SaaS); documented limits |", "|---|---|"]
        lines += [f"| {name} | {text} |" for name, text in SAAS_NOTES]
        return "\n".join(lines)

    def environment(self) -> str:
        """What the numbers were measured on."""
        cpu = "unknown CPU"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        parts = [
            f"{os.cpu_count()} cores ({cpu})",
            f"Python {platform.python_version()}",
            f"SQLite {sqlite3.sqlite_version}",
        ]
        if self.pg_version:
            parts.append(f"PostgreSQL {self.pg_version}")
        parts.append(f"load average {self.load_at_start:.1f} at the start")
        revision = source_revision()
        if revision:
            parts.append(f"importer at {revision}")
        return ", ".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rows", type=int, default=None, help=f"rows of the big CSV (default {DEFAULT_ROWS:,})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_ROWS:,} rows, {QUICK_SMALL_ROWS:,}-row small sheets",
    )
    parser.add_argument("--skip-postgres", action="store_true", help="skip the PostgreSQL cases")
    parser.add_argument(
        "--small-rows", type=int, default=None, help=f"rows of the XLSX/CSV pair (default {SMALL_ROWS:,})"
    )
    parser.add_argument(
        "--frictionless-rows",
        type=int,
        default=None,
        help="validate this many rows with frictionless (default: all)",
    )
    parser.add_argument(
        "--activation-rows", type=int, default=ACTIVATION_ROWS, help="members emailed by send-activations"
    )
    parser.add_argument("--only", metavar="CASE,...", help=f"run only these cases: {', '.join(CASE_KEYS)}")
    parser.add_argument(
        "--before",
        nargs="?",
        const=DEFAULT_BEFORE,
        metavar="REV",
        help=f"also time the importer at commit REV (default {DEFAULT_BEFORE}), alternated with this one",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the importers and their floors this many times, alternated; the table shows medians",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"kill a case after this many seconds and report a lower bound (default {DEFAULT_TIMEOUT:.0f})",
    )
    parser.add_argument("--seed", type=int, default=datagen.DEFAULT_SEED)
    parser.add_argument(
        "--keep", action="store_true", help="keep databases, logs and reports in out/work/PID/"
    )
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-admin-db", default="test", help="database psql connects to for CREATE DATABASE")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"instead of the cases: cProfile one import into SQLite ({PROFILE_ROWS:,} rows unless --rows)",
    )
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = PROFILE_ROWS if args.profile else QUICK_ROWS if args.quick else DEFAULT_ROWS
    if args.small_rows is None:
        args.small_rows = QUICK_SMALL_ROWS if args.quick else SMALL_ROWS
    if args.quick:
        args.activation_rows = min(args.activation_rows, 2_000)
    if args.rows < 1000:
        parser.error("--rows must be at least 1000 (about 2% of the rows are bad)")
    return args


def profile(args: argparse.Namespace) -> int:
    """cProfile one `importer import` of `--rows` rows into a fresh SQLite database."""
    dataset = datagen.ensure_csv(DATA_DIR, rows=args.rows, seed=args.seed)
    work = work_dir()
    path = work / "profile.db"
    work.mkdir(parents=True, exist_ok=True)
    remove_sqlite(path)
    db_url = f"sqlite:///{path}"
    setup_org(db_url)
    stats_path = OUT_DIR / f"profile-{args.rows}.pstats"  # kept, for pstats or snakeviz
    child = measure(
        [
            PYTHON,
            "-m",
            "cProfile",
            "-o",
            str(stats_path),
            *import_command(db_url, dataset.path, report_dir=work),
        ],
        log=work / "cprofile",
    )
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else child.stderr
    text = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=text)
    stats.strip_dirs()
    for order in ("cumulative", "tottime"):
        text.write(f"\n=== top {PROFILE_TOP} by {order} ===\n")
        stats.sort_stats(order).print_stats(PROFILE_TOP)
    text.write("\n=== the importer's own functions by cumulative time ===\n")
    stats.sort_stats("cumulative").print_stats(
        r"^(cli|pipeline|read|validate|load|report|workbook|emails)\.py", 30
    )
    report = (
        f"importer import of {args.rows:,} rows into SQLite under cProfile: {child.seconds:.1f} s wall, "
        f"{child.max_rss_mib:.0f} MiB peak memory, exit {child.code}\n{summary}\n{text.getvalue()}"
    )
    target = OUT_DIR / f"profile-{args.rows}.txt"
    target.write_text(report, encoding="utf-8")
    print(report)
    print(f"(written to {target.relative_to(BENCH_DIR.parent)})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if child.code in (0, 3) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the data, run the cases, print and write the table; 1 when a check failed."""
    args = parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if args.profile:
        return profile(args)
    bench = Benchmark(args)
    started = time.perf_counter()
    bench.prepare_data()
    bench.run()
    table = bench.markdown()
    header = (
        f"Benchmark of `importer import` ({args.rows:,}-row Portal Access CSV, ~2% bad rows; "
        f"{bench.small_rows:,}-row XLSX/CSV pair), {time.strftime('%Y-%m-%d')}, on {bench.environment()}. "
        "Each case is a child process in a fresh database; wall seconds, CPU seconds (user + system "
        "of the process and the children it waited for) and the peak memory of its "
        "process tree (summed PSS, so pages a fork shares count once) "
        "(for PostgreSQL cases CPU and memory are the client's, not the server's)."
    )
    results = f"{header}\n\n{table}\n"
    if bench.notes:
        results += "\n" + "".join(f"- {n}\n" for n in bench.notes)
    if bench.problems:
        results += "\nCorrectness problems:\n" + "".join(f"- {p}\n" for p in bench.problems)
    (OUT_DIR / "results.md").write_text(results, encoding="utf-8")
    print()
    print(results)
    print(
        f"(written to {(OUT_DIR / 'results.md').relative_to(BENCH_DIR.parent)}; "
        f"total {time.perf_counter() - started:.0f} s)"
    )
    if bench.problems:
        print(f"{len(bench.problems)} correctness problem(s); see above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
