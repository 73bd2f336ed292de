"""Recording that one message went: its own committed transaction, once per message.

A send run records each message right after the transport took it (sending.py): on SQLite that
commit is most of a message's cost, so it goes to the driver directly.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, bindparam, insert, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update

from importer.store.models import ActivationToken, AuditEvent, Member

MARK_SENT = (
    update(Member)
    .where(Member.id == bindparam("b_member"))
    .values(invited_at=bindparam("b_at"), invite_error=None)
)
MARK_FAILED = (
    update(Member).where(Member.id == bindparam("b_member")).values(invite_error=bindparam("b_error"))
)
REVOKE_OTHERS = (
    update(ActivationToken)
    .where(
        ActivationToken.member_id == bindparam("b_member"),
        ActivationToken.token_hash != bindparam("b_hash"),
        ActivationToken.used_at.is_(None),
        ActivationToken.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("b_at"))
)
# One audit event per message, in the transaction that records the message (a sent one goes
# through Recorder's fast path, so this is a Core statement with bind parameters).
AUDIT = insert(AuditEvent).values(
    at=bindparam("b_at"),
    actor=bindparam("b_actor"),
    organization_id=bindparam("b_org"),
    action=bindparam("b_action"),
    subject=bindparam("b_subject"),
    detail=bindparam("b_detail"),
)
REVOKE_HASHES = (
    update(ActivationToken)
    .where(ActivationToken.token_hash.in_(bindparam("b_hashes", expanding=True)))
    .values(revoked_at=bindparam("b_at"))
)


class Recorder:
    """Commits, in its own transaction, that one member's message went: once per message.

    SQLAlchemy's work per execution costs several times SQLite's own WAL commit, so on SQLite the
    same compiled statements go to the driver directly; other databases go through SQLAlchemy.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._sqlite = connection.dialect.name == "sqlite"
        # id(statement) -> (SQL, [(bind name, constant value, converter or None)])
        self._compiled: dict[int, tuple[str, list[tuple[str, Any, Any]]]] = {}

    def write(self, steps: list[tuple[Update | Insert, dict[str, Any]]]) -> None:
        """Run the statements in one committed transaction."""
        driver = self.connection.connection.driver_connection if self._sqlite else None
        if not isinstance(driver, sqlite3.Connection):
            with self.connection.begin():
                for statement, params in steps:
                    self.connection.execute(statement, params)
            return
        prepared = [self._prepare(statement, params) for statement, params in steps]
        try:
            driver.execute("BEGIN IMMEDIATE")
            for sql, values in prepared:
                driver.execute(sql, values)
            driver.commit()
        except BaseException as exc:
            if driver.in_transaction:
                driver.rollback()
            if isinstance(exc, sqlite3.Error):
                raise DBAPIError.instance(prepared[-1][0], None, exc, sqlite3.Error) from exc
            raise

    def _prepare(self, statement: Update | Insert, params: dict[str, Any]) -> tuple[str, list[Any]]:
        """The SQL and its positional values, converted as SQLAlchemy would (datetimes...)."""
        if id(statement) not in self._compiled:
            compiled = statement.compile(dialect=self.connection.dialect)
            assert isinstance(compiled, SQLCompiler)
            binds: list[tuple[str, Any, Any]] = []
            for name in compiled.positiontup or ():
                bind = compiled.binds[name]
                binds.append((name, bind.value, bind.type.bind_processor(self.connection.dialect)))
            self._compiled[id(statement)] = (compiled.string, binds)
        sql, binds = self._compiled[id(statement)]
        ordered = []
        for name, constant, convert in binds:
            value = params.get(name, constant)
            ordered.append(value if convert is None or value is None else convert(value))
        return sql, ordered
