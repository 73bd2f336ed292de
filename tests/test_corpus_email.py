"""Conformance: email-validator's and isemail's address vectors, imported as a user's sheet.

`../shared/corpus/email/vectors.json` (see its README) holds 587 addresses. Written into a CSV and
imported through the real path (reading, cleaning, checks, duplicates, the database), each gets
the verdict email-validator gives on the cell as the README says it is read (trimmed, NFC); each
valid one is keyed by email-validator's normalized form (domain IDNA-normalized, local part NFC
then lower-case). A missing corpus fails the test: it is part of the suite.
"""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select

from importer.addresses import email_key
from importer.cells import trim
from importer.checks.rules import emails_ok
from importer.store.models import Member
from importer.values import text_key

from .conftest import Org, do_import

VECTORS = Path(__file__).parent.parent.parent / "shared" / "corpus" / "email" / "vectors.json"
INVALID = {"email.invalid", "email.missing"}


def as_read(address: str) -> str:
    """The cell as the README says the importer reads it: trimmed, Unicode NFC."""
    return unicodedata.normalize("NFC", trim(address))


def normalized_form(address: str) -> str | None:
    """email-validator's verdict: None when it refuses, else its normalized form, local part keyed."""
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return None
    return text_key(valid.local_part) + "@" + valid.domain


def load_vectors() -> list[str]:
    assert VECTORS.is_file(), f"the corpus is missing: {VECTORS}"
    addresses = [vector["addr"] for vector in json.loads(VECTORS.read_text(encoding="utf-8"))]
    assert len(addresses) == 587
    return addresses


def test_every_address_gets_email_validators_verdict_and_normalized_form(org: Org, tmp_path: Path) -> None:
    addresses = load_vectors()
    # A lone surrogate (two vectors) cannot be written in any text file: those are checked below.
    writable = [a for a in addresses if not any("\ud800" <= c <= "\udfff" for c in a)]
    assert len(addresses) - len(writable) == 2
    path = tmp_path / "vectors.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("Name", "Email", "Role"))
        writer.writerows((f"Person {i}", address, "Member") for i, address in enumerate(writable))

    result = do_import(org, path, tmp_path)

    rows = {row: address for row, address in enumerate(writable, start=2)}
    refused = {e.row_number for e in result.errors if e.code.value in INVALID}
    expected = {row: normalized_form(as_read(address)) for row, address in rows.items()}
    assert refused == {row for row, form in expected.items() if form is None}
    assert len(refused) > 400 and len(rows) - len(refused) > 100  # both verdicts well represented
    # Every valid address is keyed by its normalized form: the created members in the database ...
    with org.engine.connect() as conn:
        query = select(Member.source_row, Member.email_key).where(Member.batch_id == result.batch_id)
        stored = {row: key for row, key in conn.execute(query)}
    assert stored and all(stored[row] == expected[row] for row in stored)
    # ... and those rejected as one mailbox written twice, whose first copy was not created.
    duplicates = {e.row_number for e in result.errors if e.code.value == "email.duplicate_in_file"}
    assert all(email_key(as_read(rows[row])) == expected[row] for row in duplicates)
    assert result.created + len(refused | duplicates) + len(result.skipped) == len(rows)


def test_addresses_no_file_can_hold_get_email_validators_verdict_too() -> None:
    unwritable = [a for a in load_vectors() if any("\ud800" <= c <= "\udfff" for c in a)]
    assert unwritable
    assert emails_ok([as_read(a) for a in unwritable]) == [
        normalized_form(as_read(a)) is not None for a in unwritable
    ]
