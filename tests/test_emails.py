"""The fast email check gives exactly email-validator's verdict."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.emails import check_email, surely_valid
from importer.validate import emails_ok


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
