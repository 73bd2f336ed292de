"""The command line: parse options -> call the library -> render -> exit code. Click only.

One module per area of commands (orgs, imports, activation), the group and shared options in
app.py, and ONE mapping of errors to a line and an exit code (answers.py), which also puts the
library's remedies (errors.Remedy) into the command line's words.
"""

from __future__ import annotations

from importer.cli import activation, audit, imports, members, orgs, serve, teams, tokens, worker
from importer.cli.app import cli, main

__all__ = [
    "activation",
    "audit",
    "cli",
    "imports",
    "main",
    "members",
    "orgs",
    "serve",
    "teams",
    "tokens",
    "worker",
]
