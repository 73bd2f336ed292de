"""Addresses: the fast check gives exactly email-validator's verdict; one mailbox has one comparison form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text

from importer.addresses import check_email, email_key, email_keys, surely_valid
from importer.checks.rules import emails_ok
from importer.store.engine import open_database
from importer.store.orgs import create_organization, list_members
from importer.values import text_key

from .conftest import Org, do_import, errors_of


def reference(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


VARIED = [
    "ada@example.com",
    "ADA@EXAMPLE.COM",
    "a.b-c+tag@sub.example.co.uk",
    "o'brien@example.ie",
    "x@example",
    "x@localhost",
    "x@-example.com",
    "x@example-.com",
    "x@ex_ample.com",
    "x@example..com",
    ".x@example.com",
    "x.@example.com",
    "x..y@example.com",
    "x@.example.com",
    "@example.com",
    "x@",
    "x@@example.com",
    "x y@example.com",
    '"x y"@example.com',
    "x@[127.0.0.1]",
    "x@123.123.123.123",
    "ü@example.de",
    "x@bücher.de",
    "x@xn--bcher-kva.de",
    "用户@例子.广告",
    "x@example.com.",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "x@" + "a" * 63 + ".com",
    "x@" + "a" * 64 + ".com",
    "x@" + ".".join(["a" * 60] * 4) + ".com",
    "x@example.c",
    "x@example.123",
    "x@example.invalid",
    "x@example.test",
    "x@sub.example.local",
    "x\u200b@example.com",
    "x@exa\u200bmple.com",
    "x@example.com\n",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    "x@example.com ",
    "a@b.co",
    "x@mail.gmail.com",
    "x@EXAMPLE.ORG",
    "x@example.arpa",
    "x@example.onion",
    "postmaster@example.com",
    "x@1.2",
    "x@a.b-c.de",
    "x@ex--ample.com",
]


@pytest.mark.parametrize("address", VARIED)
def test_agrees_with_email_validator_on_a_varied_sample(address: str) -> None:
    assert (check_email(address) is None) == reference(address)


_local = st.text(alphabet=st.sampled_from("abcXYZ019.-_+'!#ü@ \"\u200b"), min_size=0, max_size=70)
_domain = st.text(alphabet=st.sampled_from("abcxyz019.-_üé"), min_size=0, max_size=30)
_tld = st.sampled_from(["com", "org", "de", "c", "local", "123", "xn--p1ai", "", "invalid"])


@settings(max_examples=600, deadline=None)
@given(local=_local, domain=_domain, tld=_tld)
def test_agrees_with_email_validator_on_generated_addresses(local: str, domain: str, tld: str) -> None:
    address = f"{local}@{domain}.{tld}" if tld else f"{local}@{domain}"
    assert (check_email(address) is None) == reference(address)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_agrees_with_email_validator_on_any_text(address: str) -> None:
    assert (check_email(address) is None) == reference(address)


def test_the_column_pass_agrees_with_email_validator_on_the_varied_sample() -> None:
    # The column pass is what an import runs: whole columns at once, the plain addresses decided
    # without email-validator. Its verdicts must be email-validator's, row for row.
    column = VARIED * 3
    assert emails_ok(column) == [reference(a) for a in column]
    sure = surely_valid(column)
    assert any(sure) and not all(sure)
    assert all(reference(a) for a, ok in zip(column, sure, strict=True) if ok)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds("{}@{}.{}".format, _local, _domain, _tld), max_size=20))
def test_the_column_pass_agrees_with_email_validator_on_generated_columns(column: list[str]) -> None:
    assert emails_ok(column) == [reference(a) for a in column]


# --- the comparison form of an address -----------------------------------------------------------
#
# One mailbox is one member: the domain is compared as email-validator normalizes it (IDNA: case,
# full-width letters and punycode are spellings of one name), the local part as NFC then
# lower-case, never NFKC (look-alikes there are different mailboxes).

SAME_MAILBOX = [
    ("ann@example.com", "ANN@EXAMPLE.COM"),
    ("ann@example.com", "ann@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),  # full-width domain
    ("ann@example.com", "ann@\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.\uff43\uff4f\uff4d"),
    ("ann@b\u00fccher.de", "ann@xn--bcher-kva.de"),  # Unicode and punycode
    ("ann@b\u00fccher.de", "ann@XN--BCHER-KVA.DE"),
    ("ann@B\u00dcCHER.de", "Ann@xn--bcher-kva.de"),
    ("ann@\u4f8b\u5b50.\u5e7f\u544a", "ann@xn--fsqu00a.xn--4rr70v"),
    ("j\u00f6rg@example.com", "jo\u0308rg@example.com"),  # NFC: one letter, two spellings
]
DIFFERENT_MAILBOXES = [
    ("ann@example.com", "\uff41nn@example.com"),  # full-width a in the local part
    ("ali@example.com", "al\u0131@example.com"),  # dotless i in the local part
    ("ali@example.com", "\u0430li@example.com"),  # Cyrillic a in the local part
    ("ann@example.com", "ann@\u0435xample.com"),  # Cyrillic e in the domain: another domain
    ("ann@b\u00fccher.de", "ann@bucher.de"),
    ("ann+x@example.com", "ann@example.com"),
]


@pytest.mark.parametrize(("one", "other"), SAME_MAILBOX)
def test_one_mailbox_spelt_two_ways_has_one_comparison_form(one: str, other: str) -> None:
    assert reference(one) and reference(other)
    assert email_key(one) == email_key(other)
    assert email_keys([one, other, "ann@example.org"]) == [
        email_key(one),
        email_key(other),
        "ann@example.org",
    ]


@pytest.mark.parametrize(("one", "other"), DIFFERENT_MAILBOXES)
def test_look_alikes_keep_different_comparison_forms(one: str, other: str) -> None:
    assert reference(one) and reference(other)
    assert email_key(one) != email_key(other)


def normalized_form(address: str) -> str:
    """email-validator's normalized address, local part NFC then lower-case (the documented form)."""
    valid = validate_email(address, check_deliverability=False)
    return text_key(valid.local_part) + "@" + valid.domain


_VALID_SAMPLE = [
    a for a in {*VARIED, *(a for pair in SAME_MAILBOX + DIFFERENT_MAILBOXES for a in pair)} if reference(a)
]


@pytest.mark.parametrize("address", sorted(_VALID_SAMPLE))
def test_the_comparison_form_is_email_validators_normalized_form(address: str) -> None:
    assert email_key(address) == normalized_form(address)


_idn_label = st.text(alphabet=st.sampled_from("abcAB019-üÜéßıаＡｂ\u0308"), min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(local=_local, labels=st.lists(_idn_label, min_size=1, max_size=3), tld=_tld)
def test_the_comparison_form_agrees_with_email_validator_on_generated_addresses(
    local: str, labels: list[str], tld: str
) -> None:
    address = f"{local}@{'.'.join(labels)}.{tld}" if tld else f"{local}@{'.'.join(labels)}"
    if reference(address):
        assert email_key(address) == normalized_form(address)
        assert email_keys([address]) == [normalized_form(address)]


def test_one_mailbox_spelt_two_ways_in_one_file_is_a_duplicate(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    path = write_csv(
        "spellings.csv",
        "Name,Email,Role,Team",
        "Ann,ann@b\u00fccher.de,Member,",
        "Ann P,ann@xn--bcher-kva.de,Member,",
        "Bob,bob@example.com,Member,",
        "Bob W,bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com,Member,",
        "Ali,\u0430li@example.com,Member,",
        "Ali L,ali@example.com,Member,",
    )
    result = do_import(org, path, tmp_path)
    assert errors_of(result) == [(row, "Email", "email.duplicate_in_file") for row in (2, 3, 4, 5)]
    assert result.created == 2  # the two Alis: look-alikes in the local part are two mailboxes


def test_one_mailbox_spelt_another_way_in_a_later_import_is_skipped(
    org: Org,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    first = write_csv(
        "first.csv", "Name,Email,Role,Team", "Ann,ann@b\u00fccher.de,Member,", "Bob,bob@example.com,Member,"
    )
    assert do_import(org, first, tmp_path).created == 2
    later = write_csv(
        "later.csv",
        "Name,Email,Role,Team",
        "Ann,ann@xn--BCHER-KVA.de,Member,",
        "Bob,bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com,Member,",
        "Bob,\uff42ob@example.com,Member,",
    )
    result = do_import(org, later, tmp_path)
    assert {s.row_number: s.code.value for s in result.skipped} == {2: "member.exists", 3: "member.exists"}
    assert result.created == 1
    assert len(list_members(org.engine, org.name)) == 4  # the Owner, Ann, Bob and the full-width b


def test_the_actor_is_found_under_another_spelling_of_the_domain(
    engine: Engine,
    tmp_path: Path,
    write_csv,  # type: ignore[no-untyped-def]
) -> None:
    create_organization(engine, "B\u00fccher", owner_email="olive@b\u00fccher.de", owner_name="Olive")
    org = Org(engine=engine, name="B\u00fccher", id=0, owner="olive@xn--bcher-kva.de")
    path = write_csv(
        "one.csv",
        "Name,Email,Role,Team",
        "Ann,ann@example.com,Member,",
        "Olive,OLIVE@xn--bcher-kva.de,Admin,",
    )
    result = do_import(org, path, tmp_path)
    assert (result.created, [s.row_number for s in result.skipped]) == (1, [3])


# --- databases made before the comparison form changed ------------------------------------------

_OLD_MEMBERS = [  # (id, email) of members created under the old form (NFC, lower-case)
    (1, OWNER_AT_OLD_ORG := "olive@old.example"),
    (2, "ann@xn--bcher-kva.de"),
    (3, "bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com"),  # one mailbox with 4, created twice
    (4, "bob@example.com"),
    (5, "\uff23arl@example.com"),  # full-width C in the local part: stays its own mailbox
    (6, "Dora@B\u00dcCHER.de"),
    (7, "eve@EXAMPLE.org"),
]


def test_a_database_keyed_the_old_way_is_carried_over(db_url: str, tmp_path: Path, write_csv) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "importer.store:migrations")
    raw = create_engine(db_url)
    with raw.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        conn.execute(
            text("INSERT INTO organizations (id, name, created_at) VALUES (1, 'Old Org', '2026-01-01')")
        )
        for member_id, email in _OLD_MEMBERS:
            conn.execute(
                text(
                    "INSERT INTO members (id, organization_id, name, name_key, email, email_key, "
                    "user_type, role, team_ref, status, created_at) VALUES (:id, 1, :name, :name, :email, "
                    ":key, 'portal', :role, 0, 'active', '2026-01-01')"
                ),
                {
                    "id": member_id,
                    "name": f"m{member_id}",
                    "email": email,
                    "key": text_key(email),
                    "role": "Owner" if member_id == 1 else "Member",
                },
            )
        if conn.dialect.name == "postgresql":  # the rows above were given their ids
            conn.execute(text("SELECT setval(pg_get_serial_sequence('members', 'id'), 100)"))
    raw.dispose()

    engine = open_database(db_url)  # upgrades
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, email_key FROM members")).all())
    assert keys == {
        1: "olive@old.example",
        2: "ann@b\u00fccher.de",
        3: "bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # bob@example.com was taken: both are kept
        4: "bob@example.com",
        5: "\uff43arl@example.com",
        6: "dora@b\u00fccher.de",
        7: "eve@example.org",
    }
    path = write_csv(
        "again.csv",
        "Name,Email,Role,Team",
        "Ann,ANN@B\u00fcCHER.DE,Member,",
        "Bob,bob@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com,Member,",
        "Carl,Carl@example.com,Member,",
        "Dora,dora@xn--bcher-kva.de,Member,",
    )
    result = do_import(Org(engine, "Old Org", 1, OWNER_AT_OLD_ORG), path, tmp_path)
    assert ([s.row_number for s in result.skipped], result.created) == ([2, 3, 5], 1)  # Carl is new

    from alembic import command as commands

    with engine.begin() as conn:
        config.attributes["connection"] = conn
        commands.downgrade(config, "0003")
        keys = dict(conn.execute(text("SELECT email, email_key FROM members")).all())
    assert keys == {email: text_key(email) for email in keys}
    engine.dispose()


def test_the_readme_examples_of_the_comparison_form_hold() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Addresses", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) >= 6
    for addresses, form in rows:
        for address in re.findall(r"`([^`]+)`", addresses):
            assert reference(address), address
            expected = address.lower() if form.strip() == "unchanged" else form.strip().strip("`")
            assert email_key(address) == expected, address
