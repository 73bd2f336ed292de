"""Accounts in the activation path: one password across organizations, invitations to accept, the
Owner's own link from `org create`, the summary of refused addresses, and the audit of it all."""

from __future__ import annotations

import json
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.orm import Session

from importer.accounts.accounts import authenticate
from importer.accounts.audit import Acting, Channel, list_events
from importer.accounts.passwords import hash_password, set_password_policy, verify_password
from importer.activation.activating import activate, check_token
from importer.activation.sending import send_activations
from importer.activation.transports.smtp import SmtpTransport
from importer.cli import cli
from importer.errors import ActivationError, PermissionDeniedError
from importer.store.engine import HEAD_REVISION, current_revision, open_database
from importer.store.models import Account, AuditAction, Member, Status
from tests.smtp_server import RecordingHandler, running_smtp_server

PORTAL = "https://portal.acme.example"
SENDER = "Acme <no-reply@acme.example>"
OLIVE = "olive@acme.example"
BO = "bo@beta.example"
ANN = "ann@example.com"
LINK = re.compile(r"https://portal\.acme\.example/activate\?token=[A-Za-z0-9_-]+")
OWNER_PASSWORD = "owner pass 2026"
ANN_PASSWORD = "correct horse 42"


class Cli:
    """The real command line on one database, run from tmp_path."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(cli, ["--db", self.db_url, *args], input=input, catch_exceptions=False)

    def create_org(self, name: str, owner: str, *extra: str) -> str:
        """`org create`, and the Owner's link it printed."""
        done = self(
            "org", "create", name, "--owner-email", owner, "--owner-name", "O", "--base-url", PORTAL, *extra
        )
        assert done.exit_code == 0, done.output
        return LINK.findall(done.output)[-1] if "--send" not in extra else ""

    def sheet(self, name: str, *rows: str) -> str:
        path = self.tmp_path / name
        path.write_text("Name,Email,Role\n" + "\n".join(rows) + "\n", encoding="utf-8")
        return str(path)

    def send(self, org: str, outbox: str, *extra: str) -> Result:
        return self(
            "send-activations", "--org", org, "--from", SENDER, "--base-url", PORTAL,
            "--transport", "file", "--outbox", str(self.tmp_path / outbox), *extra,
        )  # fmt: skip


def emails(outbox: Path) -> dict[str, EmailMessage]:
    """Recipient -> message of every .eml in the outbox."""
    found = {}
    for path in outbox.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        found[str(message["To"].addresses[0].addr_spec)] = message
    return found


def link_in(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    (link,) = set(LINK.findall(body.get_content()))
    return link


@pytest.fixture
def run(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    return Cli(db_url, tmp_path)


def test_org_create_leaves_the_owner_pending_until_the_printed_link_is_followed(run: Cli) -> None:
    link = run.create_org("Acme Corp", OLIVE)
    members = json.loads(run("members", "--org", "Acme Corp", "--format", "json").output)
    assert [(m["email"], m["role"], m["status"]) for m in members] == [(OLIVE, "Owner", "pending")]
    refused = run(
        "import",
        run.sheet("a.csv", f"Ann,{ANN},Member"),
        "--org",
        "Acme Corp",
        "--as",
        OLIVE,
        "--type",
        "portal",
    )
    assert refused.exit_code == 1 and "has not activated" in refused.output
    # A send run leaves the Owner alone: the printed link is the Owner's invitation.
    assert json.loads(run.send("Acme Corp", "outbox", "--json").output) == {
        "sent": 0,
        "failed": 0,
        "skipped": 1,
    }
    done = run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n")
    assert (done.exit_code, done.output) == (
        0,
        f"{OLIVE} is now active in Acme Corp. Sign in with your email and password.\n",
    )
    engine = open_database(run.db_url)
    with Session(engine) as session:
        assert authenticate(session, email=OLIVE, password=OWNER_PASSWORD) is not None
    again = run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n")
    assert again.exit_code == 1 and "already been used" in again.output


def test_org_create_without_a_base_url_says_so_and_creates_nothing(
    run: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMPORTER_BASE_URL", raising=False)
    done = run("org", "create", "Acme Corp", "--owner-email", OLIVE, "--owner-name", "O")
    assert done.exit_code == 2
    assert "--base-url URL (or IMPORTER_BASE_URL) is required" in done.output
    assert len(done.output.splitlines()) == 1
    assert not (run.tmp_path / "importer.db").exists() or run("members", "--org", "Acme Corp").exit_code == 1


def test_org_create_send_emails_the_owner_link(run: Cli) -> None:
    run.create_org("Acme Corp", OLIVE, "--send", "--from", SENDER, "--outbox", str(run.tmp_path / "owner"))
    (message,) = emails(run.tmp_path / "owner").values()
    assert message["Subject"] == "Your account has been created!"
    done = run("activate", "--password-stdin", input=f"{link_in(message)}\n{OWNER_PASSWORD}\n")
    assert done.exit_code == 0, done.output


def test_one_password_across_two_organizations_through_the_commands(run: Cli) -> None:
    for org, owner in (("Acme Corp", OLIVE), ("Beta Ltd", BO)):
        link = run.create_org(org, owner)
        assert run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n").exit_code == 0
    sheet = run.sheet("ann.csv", f"Ann Archer,{ANN},Member")
    assert run("import", sheet, "--org", "Acme Corp", "--as", OLIVE, "--type", "portal").exit_code == 0
    assert run.send("Acme Corp", "acme").exit_code == 0
    first = emails(run.tmp_path / "acme")[ANN]
    assert first["Subject"] == "Your account has been created!"
    done = run("activate", "--password-stdin", input=f"{link_in(first)}\n{ANN_PASSWORD}\n")
    assert done.exit_code == 0, done.output

    # Beta Ltd imports the same address (spelt otherwise): an invitation, no password asked.
    sheet = run.sheet("ann2.csv", f"Ann Archer,{ANN.upper()},Member")
    assert run("import", sheet, "--org", "Beta Ltd", "--as", BO, "--type", "portal").exit_code == 0
    assert run.send("Beta Ltd", "beta").exit_code == 0
    second = emails(run.tmp_path / "beta")[ANN.upper()]
    assert second["Subject"] == "You have been added to Beta Ltd"
    text_body = second.get_body(preferencelist=("plain",))
    assert text_body is not None and "No new password is needed" in text_body.get_content()
    link = link_in(second)
    engine = open_database(run.db_url)
    info = check_token(engine, link)
    assert (info.organization, info.has_account) == ("Beta Ltd", True)
    with pytest.raises(ActivationError, match="already has an account"):
        activate(engine, link, "another pass 77")  # a password given for an existing account
    accepted = run("activate", link)  # no terminal, no --password-stdin: none is needed
    assert (accepted.exit_code, accepted.output) == (
        0,
        f"{ANN.upper()} has joined Beta Ltd. Sign in with the password you already have.\n",
    )
    with Session(engine) as session:
        rows = session.scalars(select(Member).where(Member.email_key == ANN)).all()
        assert {m.status for m in rows} == {Status.ACTIVE} and len(rows) == 2
        assert len({m.account_id for m in rows}) == 1
        (account,) = session.scalars(select(Account).where(Account.email_key == ANN)).all()
        assert verify_password(account.password_hash, ANN_PASSWORD)
        assert authenticate(session, email=ANN, password=ANN_PASSWORD) is not None
    for org in ("Acme Corp", "Beta Ltd"):
        (ann,) = [
            m
            for m in json.loads(run("members", "--org", org, "--format", "json").output)
            if m["role"] == "Member"
        ]
        assert ann["status"] == "active"


def test_resend_kills_the_old_link_and_an_invitation_resent_stays_an_invitation(run: Cli) -> None:
    for org, owner in (("Acme Corp", OLIVE), ("Beta Ltd", BO)):
        link = run.create_org(org, owner)
        assert run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n").exit_code == 0
    # Olive has an account: Beta's invitation to her is one to accept.
    sheet = run.sheet("o.csv", f"Olive,{OLIVE},Admin")
    assert run("import", sheet, "--org", "Beta Ltd", "--as", BO, "--type", "portal").exit_code == 0
    assert run.send("Beta Ltd", "first").exit_code == 0
    old = link_in(emails(run.tmp_path / "first")[OLIVE])
    assert run.send("Beta Ltd", "second", "--resend").exit_code == 0
    message = emails(run.tmp_path / "second")[OLIVE]
    assert message["Subject"] == "You have been added to Beta Ltd"
    stale = run("activate", old)
    assert stale.exit_code == 1 and "replaced by a newer one" in stale.output
    assert run("activate", link_in(message)).exit_code == 0


def test_the_actor_gets_one_summary_of_the_refused_addresses(org_with_owner: Any) -> None:
    engine, org_name = org_with_owner
    handler = RecordingHandler(refuse={"bad1@example.com", "bad2@example.com"})
    with running_smtp_server(handler) as server:
        with SmtpTransport(server.host, port=server.port, timeout=5) as transport:
            result = send_activations(
                engine, org_name, transport=transport, sender=SENDER, base_url=PORTAL,
                acting=Acting(OLIVE),
            )  # fmt: skip
        assert (result.sent, result.failed, result.summary_to) == (1, 2, OLIVE)
        received = [r for r in handler.received if r.rcpt_tos == (OLIVE,)]
        (summary,) = received
        body = summary.message.get_body(preferencelist=("plain",))
        assert body is not None
        content = body.get_content()
        assert "bad1@example.com" in content and "bad2@example.com" in content
        assert "ok@example.com" not in content
        assert summary.message["Subject"] == "Activation emails for Acme Corp: 2 refused"
        # Nothing refused: no summary at all.
        before = len(handler.received)
        with SmtpTransport(server.host, port=server.port, timeout=5) as transport:
            quiet = send_activations(
                engine, org_name, transport=transport, sender=SENDER, base_url=PORTAL, resend=True,
                acting=Acting(OLIVE), member_ids=[_member_id(engine, "ok@example.com")],
            )  # fmt: skip
        assert (quiet.sent, quiet.summary_to, len(handler.received)) == (1, None, before + 1)


def test_only_an_active_owner_or_admin_may_act_for_a_send(org_with_owner: Any) -> None:
    engine, org_name = org_with_owner
    with pytest.raises(PermissionDeniedError):
        send_activations(
            engine, org_name, transport=_Nowhere(), sender=SENDER, base_url=PORTAL,
            acting=Acting("ok@example.com"),
        )  # fmt: skip


def test_a_member_asking_for_their_own_link_reaches_only_themselves_in_their_own_name(
    org_with_owner: Any,
) -> None:
    # `Send me a new link` acts for the member (Channel.SELF): no admin's authority or name is used,
    # only the member's own address is mailed whatever ids are given, and no summary goes out.
    engine, org_name = org_with_owner
    handler = RecordingHandler(refuse={"bad1@example.com"})
    everyone = [_member_id(engine, a) for a in ("ok@example.com", "bad1@example.com", "bad2@example.com")]
    with (
        running_smtp_server(handler) as server,
        SmtpTransport(server.host, port=server.port, timeout=5) as transport,
    ):
        result = send_activations(
            engine, org_name, transport=transport, sender=SENDER, base_url=PORTAL,
            acting=Acting("bad1@example.com", channel=Channel.SELF), member_ids=everyone,
        )  # fmt: skip
    assert (result.sent, result.failed, result.summary_to) == (0, 1, None)
    assert [r.rcpt_tos for r in handler.received] == []  # refused, and no summary to anyone
    events = [e for e in list_events(engine, org_name) if e.action is AuditAction.INVITATION_REFUSED]
    assert [(e.actor, e.subject) for e in events] == [("bad1@example.com", "bad1@example.com")]


def test_the_audit_trail_of_a_whole_session(run: Cli) -> None:
    link = run.create_org("Acme Corp", OLIVE)
    assert run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n").exit_code == 0
    engine = open_database(run.db_url)
    set_password_policy(engine, "Acme Corp", actor_email=OLIVE, min_length=10)
    sheet = run.sheet("s.csv", f"Ann Archer,{ANN},Member", "Bad,bad@example.com,Member")
    assert run("import", sheet, "--org", "Acme Corp", "--as", OLIVE, "--type", "portal").exit_code == 0
    with running_smtp_server(RecordingHandler(refuse={"bad@example.com"})) as server:
        done = run(
            "send-activations", "--org", "Acme Corp", "--as", OLIVE, "--from", SENDER, "--base-url", PORTAL,
            "--transport", "smtp", "--smtp-host", server.host, "--smtp-port", str(server.port),
        )  # fmt: skip
        assert done.exit_code == 3
        assert f"The list of refused addresses was emailed to {OLIVE}." in done.output
        assert run(
            "send-activations", "--org", "Acme Corp", "--as", OLIVE, "--from", SENDER, "--base-url", PORTAL,
            "--transport", "smtp", "--smtp-host", server.host, "--smtp-port", str(server.port), "--resend",
        ).exit_code == 3  # fmt: skip
        ann_link = link_in([r.message for r in server.handler.received if r.rcpt_tos == (ANN,)][-1])
    assert run("activate", "--password-stdin", input=f"{ann_link}\nlonger pass 2026\n").exit_code == 0
    events = [(e.action, e.actor, e.subject) for e in reversed(list_events(engine, "Acme Corp"))]
    batch = events[3][2]
    assert events == [
        (AuditAction.INVITATION_SENT, "cli:", OLIVE),
        (AuditAction.ACTIVATED, OLIVE, OLIVE),
        (AuditAction.PASSWORD_POLICY_CHANGED, f"cli:{OLIVE}", "Acme Corp"),
        (AuditAction.IMPORT, f"cli:{OLIVE}", batch),
        (AuditAction.INVITATION_SENT, f"cli:{OLIVE}", ANN),
        (AuditAction.INVITATION_REFUSED, f"cli:{OLIVE}", "bad@example.com"),
        (AuditAction.INVITATION_RESENT, f"cli:{OLIVE}", ANN),
        (AuditAction.INVITATION_REFUSED, f"cli:{OLIVE}", "bad@example.com"),
        (AuditAction.ACTIVATED, ANN, ANN),
    ]
    # Never a password or a token in an event.
    with engine.connect() as conn:
        dumped = json.dumps([list(map(str, row)) for row in conn.execute(text("SELECT * FROM audit_events"))])
    for secret in (OWNER_PASSWORD, "longer pass 2026", link.rsplit("=", 1)[1], ann_link.rsplit("=", 1)[1]):
        assert secret not in dumped


def test_migration_0007_carries_member_passwords_into_accounts_and_back(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    def migrate(revision: str, *, down: bool = False) -> None:
        config = Config()
        config.set_main_option("script_location", "importer.store:migrations")
        raw = create_engine(db_url)
        with raw.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)
        raw.dispose()

    migrate("0006")
    old, new = hash_password("first pass 1"), hash_password("later pass 2")
    raw = create_engine(db_url)
    with raw.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organizations (id, name, created_at) "
                "VALUES (1, 'A', '2026-01-01'), (2, 'B', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO accounts (email, email_key, password_hash, created_at, password_changed_at) "
                "VALUES ('cy@x.example', 'cy@x.example', :old, '2026-01-01', '2026-01-01')"
            ),
            {"old": old},
        )
        cy = conn.execute(text("SELECT id FROM accounts")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO members (id, organization_id, name, name_key, email, email_key, user_type, "
                "role, team_ref, status, password_hash, account_id, created_at, activated_at) VALUES "
                "(:id, :org, 'M', 'm', :email, :email, 'portal', 'Member', 0, :status, :pw, :acc, "
                "'2026-01-01', :at)"
            ),
            [
                # Activated by the 0006 code: a password on the member, no account.
                {
                    "id": 1,
                    "org": 1,
                    "email": "ann@x.example",
                    "status": "active",
                    "pw": new,
                    "acc": None,
                    "at": "2026-02-01",
                },
                # An account already, and a later password set through another membership.
                {
                    "id": 2,
                    "org": 1,
                    "email": "cy@x.example",
                    "status": "active",
                    "pw": old,
                    "acc": 1,
                    "at": "2026-01-01",
                },
                {
                    "id": 3,
                    "org": 2,
                    "email": "cy@x.example",
                    "status": "active",
                    "pw": new,
                    "acc": None,
                    "at": "2026-03-01",
                },
                {
                    "id": 4,
                    "org": 2,
                    "email": "dee@x.example",
                    "status": "pending",
                    "pw": None,
                    "acc": None,
                    "at": None,
                },
            ],
        )
    raw.dispose()
    engine = open_database(db_url)
    assert current_revision(engine) == HEAD_REVISION  # 0007 and those after it
    assert "password_hash" not in {c["name"] for c in inspect(engine).get_columns("members")}
    with Session(engine) as session:
        accounts = {a.email_key: a for a in session.scalars(select(Account))}
        assert sorted(accounts) == ["ann@x.example", "cy@x.example"]
        assert verify_password(accounts["ann@x.example"].password_hash, "later pass 2")
        assert verify_password(accounts["cy@x.example"].password_hash, "later pass 2")  # the later one
        links = {m.id: m.account_id for m in session.scalars(select(Member))}
        assert links == {1: accounts["ann@x.example"].id, 2: cy, 3: cy, 4: None}
    engine.dispose()
    migrate("0006", down=True)
    raw = create_engine(db_url)
    with raw.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, password_hash FROM members ORDER BY id")).all())
    raw.dispose()
    assert rows[4] is None and all(verify_password(rows[i], "later pass 2") for i in (1, 2, 3))


# --- helpers -----------------------------------------------------------------------------------


class _Nowhere:
    def send(self, message: object, /) -> None:
        raise AssertionError("nothing is sent")


def _member_id(engine: Any, email: str) -> int:
    with Session(engine) as session:
        found = session.scalar(select(Member.id).where(Member.email_key == email))
        assert found is not None
        return found


@pytest.fixture
def org_with_owner(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """Acme Corp with its Owner active (through the link) and three pending members, one of whom
    (ok@) the server accepts."""
    monkeypatch.chdir(tmp_path)
    run = Cli(db_url, tmp_path)
    link = run.create_org("Acme Corp", OLIVE)
    assert run("activate", "--password-stdin", input=f"{link}\n{OWNER_PASSWORD}\n").exit_code == 0
    sheet = run.sheet(
        "s.csv", "Ok,ok@example.com,Member", "B1,bad1@example.com,Member", "B2,bad2@example.com,Member"
    )
    assert run("import", sheet, "--org", "Acme Corp", "--as", OLIVE, "--type", "portal").exit_code == 0
    return open_database(db_url), "Acme Corp"
