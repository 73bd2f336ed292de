"""The session-signing key: generated once beside the SQLite database, mode 0600, then kept."""

from __future__ import annotations

import stat
from pathlib import Path

from importer.web.config import load_secret_key, secret_key_path


def test_the_key_is_made_once_beside_the_database_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    path = secret_key_path(f"sqlite:///{tmp_path / 'portal.db'}")
    assert path == tmp_path / "portal.db.secret-key"
    first = load_secret_key(path)
    assert len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path) == first
    assert secret_key_path("postgresql+psycopg://db/x") is None
