"""Sends at scale (issue 15): several SMTP connections at once, on a real aiosmtpd server, still
one message per member; a server failing part-way and a run killed mid-way lose nothing and send
again at most the message each connection had in flight."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

import importer.activation.sending
import importer.store.orgs
from importer.accounts.audit import Acting
from importer.activation.activating import activate
from importer.activation.sending import send_activations
from importer.activation.transports.base import OutgoingMessage
from importer.activation.transports.smtp import SmtpTransport
from importer.cli import cli
from importer.errors import ImporterError, TransportError
from importer.store.models import Member
from importer.store.orgs import UndoResult, undo_batch
from importer.values import UserType
from tests.activation.test_activation import (
    BASE_URL,
    NOW,
    SENDER,
    STRONG,
    add_batch,
    add_member,
    add_members,
    member_row,
    token_of,
)
from tests.conftest import Org
from tests.smtp_server import (
    CLOSING_REPLY,
    REFUSED_REPLY,
    Received,
    RecordingHandler,
    connection_limit,
    free_port,
    running_smtp_server,
)

CONNECTIONS = 4


def most_at_once(received: list[Received]) -> int:
    """The most connections mid-run at one moment, as the server saw them: each connection spans
    from the first to the last message it delivered."""
    spans: dict[object, tuple[int, int]] = {}
    for index, message in enumerate(received):
        first = spans.get(message.peer, (index, index))[0]
        spans[message.peer] = (first, index)
    return max(
        (
            sum(1 for first, last in spans.values() if first <= index <= last)
            for index in range(len(received))
        ),
        default=0,
    )


def per_recipient(received: list[Received]) -> Counter[str]:
    return Counter(rcpt for message in received for rcpt in message.rcpt_tos)


def invited_count(org: Org) -> int:
    with Session(org.engine) as session:
        return len(session.scalars(select(Member.id).where(Member.invited_at.is_not(None))).all())


def test_four_connections_send_every_pending_member_exactly_one_message(org: Org) -> None:
    emails = add_members(org, 600)
    add_member(org, "Earlier Ed", "ed@example.com", invited_at=NOW)  # emailed before: skipped
    add_member(org, "Nora Noportal", "nora@example.com", user_type=UserType.NO_PORTAL)
    handler = RecordingHandler()
    with (
        running_smtp_server(handler) as server,
        SmtpTransport(server.host, port=server.port, timeout=5, connections=CONNECTIONS) as transport,
    ):
        seen: list[tuple[int, int]] = []
        result = send_activations(
            org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL, now=NOW,
            on_progress=lambda done, total: seen.append((done, total)),
        )  # fmt: skip
    assert result.to_dict() == {"sent": 600, "failed": 0, "skipped": 1}
    assert per_recipient(handler.received) == dict.fromkeys(emails, 1)
    assert handler.connections == CONNECTIONS  # one session per connection, each kept for the run
    assert most_at_once(handler.received) > 1  # the server had several connections busy at once
    assert seen == [(done, 600) for done in range(1, 601)]
    assert invited_count(org) == 601
    # Every link that went out works (each message carries its own member's token).
    later = NOW + dt.timedelta(hours=1)
    for message in (handler.received[0], handler.received[-1]):
        (address,) = message.rcpt_tos
        assert activate(org.engine, token_of(message.message), STRONG, now=later).email == address


def test_refused_recipients_are_recorded_and_the_others_still_go(org: Org) -> None:
    emails = add_members(org, 200)
    refused = set(emails[5::40])  # five of them, spread over the run
    handler = RecordingHandler(refuse=refused)
    with (
        running_smtp_server(handler) as server,
        SmtpTransport(server.host, port=server.port, timeout=5, connections=CONNECTIONS) as transport,
    ):
        result = send_activations(
            org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL, now=NOW,
            acting=Acting(org.owner),
        )  # fmt: skip
    assert (result.sent, result.failed, result.summary_to) == (195, 5, org.owner)
    assert {failure.email for failure in result.failures} == refused
    counts = per_recipient(handler.received)
    assert counts == {**dict.fromkeys(set(emails) - refused, 1), org.owner: 1}
    for address in refused:
        member = member_row(org.engine, address)
        assert member.invited_at is None and member.invite_error == REFUSED_REPLY
    (summary,) = [m for m in handler.received if m.rcpt_tos == (org.owner,)]
    body = summary.message.get_body(preferencelist=("plain",))
    assert body is not None
    assert all(address in body.get_content() for address in refused)


def test_a_server_failing_part_way_then_a_second_run_sends_each_member_once(org: Org) -> None:
    emails = add_members(org, 500)
    handler = RecordingHandler(fail_after=150)
    with running_smtp_server(handler) as server:
        with (
            SmtpTransport(server.host, port=server.port, timeout=5, connections=CONNECTIONS) as transport,
            pytest.raises(TransportError, match="The run stopped after") as raised,
        ):
            send_activations(org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL)
        assert CLOSING_REPLY.split()[0] in str(raised.value)
        first = raised.value.result
        assert first is not None
        # Messages past MAIL FROM when the server went down were still taken (one a connection).
        delivered = len(handler.received)
        assert 150 <= delivered <= 150 + CONNECTIONS
        assert first.sent == delivered == invited_count(org)

        handler.fail_after = None  # the server is back
        with SmtpTransport(server.host, port=server.port, timeout=5, connections=CONNECTIONS) as transport:
            second = send_activations(
                org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL
            )
    assert second.to_dict() == {"sent": 500 - delivered, "failed": 0, "skipped": delivered}
    assert per_recipient(handler.received) == dict.fromkeys(emails, 1)


def test_a_server_that_allows_fewer_connections_gets_them_and_every_message(org: Org) -> None:
    emails = add_members(org, 300)
    handler = RecordingHandler()
    with (
        running_smtp_server(handler) as server,
        connection_limit(server, 2) as front,
        SmtpTransport(front.host, port=front.port, timeout=5, connections=CONNECTIONS) as transport,
    ):
        result = send_activations(org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL)
    assert front.turned_away >= 1  # the connections past the server's limit were refused ...
    assert handler.connections == 2  # ... and given up: the run went on over the two it allows
    assert result.to_dict() == {"sent": 300, "failed": 0, "skipped": 0}
    assert per_recipient(handler.received) == dict.fromkeys(emails, 1)


def test_an_unreachable_server_stops_a_parallel_run_at_once_and_sends_nothing(org: Org) -> None:
    add_members(org, 50)
    with (
        SmtpTransport("127.0.0.1", port=free_port(), timeout=5, connections=CONNECTIONS) as transport,
        pytest.raises(TransportError, match="cannot connect to the SMTP server") as raised,
    ):
        send_activations(org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL)
    assert raised.value.result is not None
    assert raised.value.result.to_dict() == {"sent": 0, "failed": 0, "skipped": 0}
    assert invited_count(org) == 0


def send_command(org: Org, port: int, *extra: str) -> list[str]:
    """`importer send-activations` over SMTP to 127.0.0.1:port, as its own process would run it."""
    database = org.engine.url.render_as_string(hide_password=False)
    return [
        *(sys.executable, "-m", "importer", "--db", database, "send-activations", "--org", org.name),
        *("--from", SENDER, "--base-url", BASE_URL, "--transport", "smtp", "--smtp-host", "127.0.0.1"),
        *("--smtp-port", str(port), *extra),
    ]


def test_a_run_killed_mid_way_then_run_again_misses_nobody(org: Org) -> None:
    emails = add_members(org, 3000)
    handler = RecordingHandler()
    with running_smtp_server(handler) as server:
        process = subprocess.Popen(
            send_command(org, server.port, "--smtp-connections", str(CONNECTIONS)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while process.poll() is None and len(handler.received) < 300 and time.monotonic() < deadline:
            time.sleep(0.001)  # a poll interval: let the run send a little
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        before = len(handler.received)
        assert 300 <= before < 3000
        assert most_at_once(handler.received) > 1

        with SmtpTransport(server.host, port=server.port, timeout=5, connections=CONNECTIONS) as transport:
            again = send_activations(
                org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL
            )
    counts = per_recipient(handler.received)
    assert set(counts) == set(emails)  # nobody missed
    twice = [address for address, count in counts.items() if count > 1]
    assert max(counts.values()) <= 2
    assert len(twice) <= CONNECTIONS  # at most the message each connection had in flight
    assert again.sent + again.skipped == 3000 and again.failed == 0
    assert invited_count(org) == 3000
    # A member emailed twice (the killed run's message in flight, and the rerun's): the newer
    # link works.
    for address in twice:
        latest = [m for m in handler.received if m.rcpt_tos == (address,)][-1]
        assert activate(org.engine, token_of(latest.message), STRONG).email == address


def test_the_command_sends_over_several_connections(org: Org) -> None:
    emails = add_members(org, 120)
    handler = RecordingHandler()
    with running_smtp_server(handler) as server:
        database = org.engine.url.render_as_string(hide_password=False)
        args = send_command(org, server.port, "--smtp-connections", "3", "--json")[3:]
        outcome = CliRunner().invoke(cli, args)
        assert args[:2] == ["--db", database]
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.stdout) == {"sent": 120, "failed": 0, "skipped": 0}
    assert per_recipient(handler.received) == dict.fromkeys(emails, 1)
    assert handler.connections == 3


@pytest.mark.parametrize("count", ["0", "9", "many"])
def test_a_connection_count_out_of_range_is_a_usage_error(org: Org, count: str) -> None:
    add_members(org, 1)
    args = send_command(org, 25, "--smtp-connections", count)[3:]
    outcome = CliRunner().invoke(cli, args)
    assert outcome.exit_code == 2
    assert "--smtp-connections" in outcome.output
    assert invited_count(org) == 0


def test_the_transport_refuses_a_connection_count_out_of_range() -> None:
    with pytest.raises(ImporterError, match="choose from 1 to 8"):
        SmtpTransport("127.0.0.1", port=25, connections=9)


class ParallelTransport:
    """A transport that `connections` senders may call at once, keeping every message it takes.

    The first `connections` calls wait for one another (a barrier, which fails after 30 s): the
    run is seen to keep that many messages in flight at once. `before`: called with each message's
    recipient before it is taken.
    """

    def __init__(self, connections: int = CONNECTIONS, before: Callable[[str], None] | None = None) -> None:
        self.connections = connections
        self.recipients: list[str] = []
        self._calls = 0
        self._lock = threading.Lock()
        self._together = threading.Barrier(connections)
        self._before = before

    def send(self, message: OutgoingMessage, /) -> None:
        with self._lock:
            self._calls += 1
            first = self._calls <= self.connections
        if first:
            self._together.wait(timeout=30)
        if self._before is not None:
            self._before(message.recipient)
        with self._lock:
            self.recipients.append(message.recipient)


class Clock:
    """The send run's clock, stopped: its turn (MAILING_TURN_SECONDS) never comes; or, once `fast`,
    an hour on at each look: its turn is due whenever it looks."""

    def __init__(self) -> None:
        self.now = time.monotonic()
        self.fast = False

    def monotonic(self) -> float:
        if self.fast:
            self.now += 3600
        return self.now


def test_an_interrupt_lets_the_messages_in_flight_end_and_be_recorded(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer.activation.sending, "time", Clock())  # no turn to pass
    emails = add_members(org, 300)
    transport = ParallelTransport()

    def interrupt_at_100(done: int, total: int) -> None:
        if done == 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send_activations(
            org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL,
            on_progress=interrupt_at_100,
        )  # fmt: skip
    went = list(transport.recipients)
    assert 100 <= len(went) < 100 + CONNECTIONS  # those in flight at the interrupt ended
    assert invited_count(org) == len(went)  # and were recorded
    rerun = ParallelTransport()
    result = send_activations(org.engine, org.name, transport=rerun, sender=SENDER, base_url=BASE_URL)
    assert result.to_dict() == {"sent": 300 - len(went), "failed": 0, "skipped": len(went)}
    assert Counter(went + rerun.recipients) == dict.fromkeys(emails, 1)


def test_an_undo_during_a_parallel_send_waits_for_the_messages_in_flight(
    org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run lets a waiting undo in every MAILING_TURN_SECONDS, once no message is in flight:
    # here its clock stands still (four messages in flight at once), then, from the moment the undo
    # waits, runs so fast that the turn is due at every message.
    clock = Clock()
    monkeypatch.setattr(importer.activation.sending, "time", clock)
    add_member(org, "Olga Before", "olga@example.com")
    batch = add_batch(org, "b-undone")
    removed = set(add_members(org, 400, batch_id=batch))
    add_member(org, "Zed After", "zed@example.com")
    undo_waits = threading.Event()  # the undo waits for the run to let it in (or it returned)
    undone = threading.Event()
    results: list[UndoResult] = []
    real_hold_lock = getattr(importer.store.orgs, "hold_lock", None)
    assert real_hold_lock is not None

    @contextmanager
    def hold_lock_noting_the_wait(*args: Any) -> Iterator[None]:
        undo_waits.set()
        with real_hold_lock(*args):
            yield

    monkeypatch.setattr(importer.store.orgs, "hold_lock", hold_lock_noting_the_wait)

    def undo() -> None:
        results.append(undo_batch(org.engine, batch))
        undone.set()
        undo_waits.set()

    undoer = threading.Thread(target=undo)
    starting = threading.Lock()
    after_undo: list[str] = []

    def before(recipient: str) -> None:
        if undone.is_set():
            after_undo.append(recipient)
        if recipient in removed:
            with starting:
                if not undoer.is_alive() and not undone.is_set():
                    undoer.start()
                    assert undo_waits.wait(timeout=60)
                    clock.fast = True

    transport = ParallelTransport(before=before)
    result = send_activations(org.engine, org.name, transport=transport, sender=SENDER, base_url=BASE_URL)
    undoer.join(timeout=60)

    assert [r.removed for r in results] == [400]
    assert [r for r in after_undo if r in removed] == []  # nobody the undo removed, once it returned
    mailed = transport.recipients
    assert "olga@example.com" in mailed and "zed@example.com" in mailed  # the rest still went
    assert 1 <= len(removed.intersection(mailed)) < len(removed)
    assert result.to_dict() == {"sent": len(mailed), "failed": 0, "skipped": 0}
