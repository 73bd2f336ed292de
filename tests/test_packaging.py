"""A plain `pip install .` works outside the checkout: schemas, templates and migrations ship."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_wheel_carries_schemas_templates_and_migrations_and_runs_outside_the_checkout(
    tmp_path: Path,
) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("member_importer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "importer/schemas/portal.toml",
        "importer/schemas/no-portal.toml",
        "importer/templates/report/report.html.j2",
        "importer/templates/email/activation.txt.j2",
        "importer/templates/email/activation.html.j2",
        "importer/store/migrations/env.py",
        "importer/store/migrations/versions/0002_activation.py",
        "importer/accounts/common-passwords.txt",
    ):
        assert needed in names, needed
    # Every module of the package ships (a subpackage missing from pyproject's list would not).
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "importer").rglob("*.py")}
    assert not modules - names, sorted(modules - names)

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = (
        "import importer, sys; from importer.cli import cli; "
        "assert str(importer.__file__).startswith(sys.argv[1]), importer.__file__; "
        "cli(['--db', 'sqlite:///x.db', 'template', 'portal', '--format', 'csv', '-o', 't.csv'])"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        cwd=outside, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert (outside / "t.csv").read_text().startswith("Name (required),Email (required)"), ran.stderr
