"""Common passwords and the address inside the password are refused by the policy itself, so the
CLI's `activate`, the portal's /activate and a change of password all refuse them alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from importer.accounts.accounts import set_password
from importer.accounts.passwords import PasswordPolicy, common_passwords
from importer.cli import cli
from importer.errors import ActivationError
from importer.store.engine import open_database

OWNER = "olive.owner@acme.example"


def test_the_shipped_list_is_found_and_large() -> None:
    common = common_passwords()
    assert len(common) > 10_000
    assert {"password123", "qwerty123"} <= common


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("password123", "it is one of the most common passwords"),
        ("PassWord123", "it is one of the most common passwords"),
        ("olive.owner2026", "it contains the email address"),
        ("x" + OWNER.upper() + "1", "it contains the email address"),
    ],
)
def test_the_policy_refuses_guessable_passwords(password: str, reason: str) -> None:
    refusal = PasswordPolicy().refusal(password, email=OWNER, whose="Acme Corp")
    assert refusal is not None and reason in refusal
    assert PasswordPolicy().refusal("Tangerine-Harbour-42", email=OWNER, whose="Acme Corp") is None


def test_cli_activate_refuses_a_common_password_and_the_address(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMPORTER_BASE_URL", "https://portal.acme.example")
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)

    created = run("org", "create", "Acme Corp", "--owner-email", OWNER, "--owner-name", "Olive")
    assert created.exit_code == 0, created.output
    link = created.output.splitlines()[-1]

    common = run("activate", "--password-stdin", input=f"{link}\npassword123\n")
    assert common.exit_code == 1
    assert "it is one of the most common passwords" in common.output
    own = run("activate", "--password-stdin", input=f"{link}\nolive.owner-2026\n")
    assert own.exit_code == 1
    assert "it contains the email address" in own.output
    # Refused attempts leave the link usable.
    done = run("activate", "--password-stdin", input=f"{link}\nTangerine Harbour 42\n")
    assert done.exit_code == 0, done.output

    engine = open_database(db_url)
    try:
        with Session(engine) as session, pytest.raises(ActivationError, match="most common"):
            set_password(session, email=OWNER, password="qwerty123")
    finally:
        engine.dispose()
