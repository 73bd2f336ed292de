"""Activation sends per second over SMTP with 1 and with 4 connections, in one run (issue 15).

    .venv/bin/python benchmarks/sends.py [--members 20000] [--latency-ms 2] [--latency-members 5000]

Builds a SQLite database of MEMBERS pending portal members in one organization (one SQL
statement, untimed: the import is measured elsewhere), copies it once per case, and times
`send_activations` (the library call `send-activations` makes, so the process start is not in
the rate) to an aiosmtpd server on 127.0.0.1 that runs in a process of its own (so it does not
share the sender's interpreter lock). Each case is checked: every member recorded as emailed and
the server took exactly one message per member.

Two servers:
- a plain local aiosmtpd: no latency but the loopback's and aiosmtpd's own work;
- the same with a simulated network delay: it waits LATENCY_MS before answering MAIL FROM, RCPT
  TO and the end of DATA (three round trips a message), fewer members (LATENCY_MEMBERS).
Prints messages/s for each, the ratio of 4 connections to 1, and the sending process's peak
resident memory during each case (sampled every 50 ms; the database is built by a child process,
so its page cache is not counted), as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datagen
from sqlalchemy import func, select

ORG = "Bench"
OWNER = "owner@bench.example"
SENDER = "Bench <no-reply@bench.example>"
PORTAL = "https://portal.bench.example"


# --- the server (run as `sends.py --serve LATENCY_MS`) -------------------------------------------


class CountingHandler:
    """Counts the messages per recipient and the most transactions in progress at once."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.messages = 0
        self.recipients: set[str] = set()
        self.active = 0
        self.most_active = 0
        self.peers: set[Any] = set()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.messages += 1
        self.recipients.update(envelope.rcpt_tos)
        self.peers.add(session.peer)
        self.active -= 1
        return "250 2.0.0 accepted"


def serve(latency_ms: float) -> None:
    """Serve on a free port of 127.0.0.1; print it; on each line of stdin print the counts."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = CountingHandler(latency_ms / 1000)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print(port, flush=True)
    cpu = time.process_time()
    for _ in sys.stdin:
        used, cpu = time.process_time() - cpu, time.process_time()
        print(
            handler.messages,
            len(handler.recipients),
            handler.most_active,
            len(handler.peers),
            used,
            flush=True,
        )
        handler.messages, handler.recipients, handler.most_active, handler.peers = 0, set(), 0, set()
    controller.stop()


class Server:
    """The counting server, in a child process."""

    def __init__(self, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(latency_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stdin is not None
        self.port = int(self.process.stdout.readline())

    def counts(self) -> tuple[int, int, int, int, float]:
        """Messages, distinct recipients, most transactions at once, connections, CPU seconds,
        since the last call."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        *numbers, cpu = self.process.stdout.readline().split()
        messages, recipients, most, peers = map(int, numbers)
        return messages, recipients, most, peers, float(cpu)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- the sender ----------------------------------------------------------------------------------


def build(path: Path, members: int) -> None:
    """One organization and `members` pending portal members, by one SQL statement."""
    datagen.seed_organization(
        f"sqlite:///{path}", name=ORG, owner=OWNER, members=members, domain="example.com"
    )


class PeakMemory:
    """The largest resident set size of this process while the block runs, sampled every 50 ms."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            with open("/proc/self/statm") as statm:
                pages = int(statm.read().split()[1])
            self.peak_mib = max(self.peak_mib, pages * 4096 / 2**20)
            if self._stop.wait(0.05):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Case:
    label: str
    connections: int
    latency_ms: float
    members: int
    seconds: list[float] = field(default_factory=list)
    most_at_once: int = 0

    peak_mib: float = 0.0
    sender_cpu: list[float] = field(default_factory=list)  # seconds, all threads
    server_cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return self.members / self.median


def run_case(case: Case, template: Path, folder: Path, server: Server) -> None:
    """Send to every member of a copy of the template database; check and time it."""
    from importer.activation.sending import send_activations
    from importer.activation.transports.smtp import SmtpTransport
    from importer.store.engine import open_database
    from importer.store.models import Member

    path = folder / f"{case.connections}-{case.latency_ms:g}.db"
    shutil.copy(template, path)
    if Path(f"{template}-wal").exists():
        shutil.copy(f"{template}-wal", f"{path}-wal")
    engine = open_database(f"sqlite:///{path}")
    memory = PeakMemory()
    try:
        with memory, SmtpTransport("127.0.0.1", port=server.port, connections=case.connections) as transport:
            started, cpu = time.perf_counter(), time.process_time()
            result = send_activations(engine, ORG, transport=transport, sender=SENDER, base_url=PORTAL)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        with engine.connect() as conn:
            invited = conn.scalar(select(func.count()).where(Member.invited_at.is_not(None)))
    finally:
        engine.dispose()
        path.unlink()
    messages, recipients, most_at_once, peers, server_cpu = server.counts()
    expected = case.members
    if not (result.sent == invited == messages == recipients == expected) or peers != case.connections:
        raise SystemExit(
            f"{case.label}: sent {result.sent}, recorded {invited}, server took {messages} for "
            f"{recipients} recipients over {peers} connections; expected {expected} over {case.connections}"
        )
    case.seconds.append(seconds)
    case.sender_cpu.append(cpu)
    case.server_cpu.append(server_cpu)
    case.peak_mib = max(case.peak_mib, memory.peak_mib)
    case.most_at_once = max(case.most_at_once, most_at_once)
    print(
        f"{case.label}: {case.members:,} messages in {seconds:.2f} s = {case.members / seconds:,.0f}/s "
        f"(at most {most_at_once} transactions at once on the server)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=2.0, help="0: no simulated-latency cases")
    parser.add_argument("--latency-members", type=int, default=5_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="runs of each case, alternately; medians")
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.build:
        build(Path(args.build[0]), int(args.build[1]))
        return 0
    n = args.connections
    pairs = [(Case("plain local aiosmtpd, 1 connection", 1, 0.0, args.members),
              Case(f"plain local aiosmtpd, {n} connections", n, 0.0, args.members))]  # fmt: skip
    if args.latency_ms:
        label = f"aiosmtpd + {args.latency_ms:g} ms before each of 3 replies (simulated network)"
        members = args.latency_members
        pairs.append((Case(f"{label}, 1 connection", 1, args.latency_ms, members),
                      Case(f"{label}, {n} connections", n, args.latency_ms, members)))  # fmt: skip
    cases = [case for pair in pairs for case in pair]
    with tempfile.TemporaryDirectory(prefix="importer-sends-") as name:
        folder = Path(name)
        templates: dict[int, Path] = {}
        for members in sorted({case.members for case in cases}):
            templates[members] = folder / f"template-{members}.db"
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--build", str(templates[members]), str(members)], check=True
            )
            print(f"built {members:,} members in {time.perf_counter() - started:.1f} s (untimed)", flush=True)
        servers = {latency: Server(latency) for latency in sorted({case.latency_ms for case in cases})}
        try:
            for run in range(args.runs):
                for pair in pairs:
                    for case in pair if run % 2 == 0 else reversed(pair):
                        run_case(case, templates[case.members], folder, servers[case.latency_ms])
        finally:
            for server in servers.values():
                server.stop()
    print()
    print(
        f"| case | messages | median s ({args.runs} runs) | messages/s | vs 1 connection | peak MiB "
        "| CPU ms/message: sender, server |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for single, parallel in pairs:
        for case in (single, parallel):
            print(
                f"| {case.label} | {case.members:,} | {case.median:.2f} | {case.rate:,.0f} | "
                f"{case.rate / single.rate:.2f}× | {case.peak_mib:.0f} | "
                f"{statistics.median(case.sender_cpu) * 1000 / case.members:.2f}, "
                f"{statistics.median(case.server_cpu) * 1000 / case.members:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
