"""Validation-only peer: frictionless validates the sheet against a Table Schema; prints JSON counts.

Usage: frictionless_validate.py CSV TEAM...
The schema states the same rules as the importer's Portal Access sheet, as far as Table Schema can:
Name required (1-100 characters), Email required, an email, unique; Role Admin/Member in any
case; Team blank or a known team in any case. Unique is case-sensitive in Table Schema.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

from frictionless import Checklist, Resource, Schema


def main() -> None:
    """Validate and print {rows, invalid_rows, errors_by_type}."""
    path, teams = Path(sys.argv[1]).resolve(), sys.argv[2:]
    team_pattern = "(?i:" + "|".join(re.escape(t) for t in teams) + ")"
    schema = Schema.from_descriptor(
        {
            "fields": [
                {"name": "Name", "type": "string", "constraints": {"required": True, "maxLength": 100}},
                {
                    "name": "Email",
                    "type": "string",
                    "format": "email",
                    "constraints": {"required": True, "unique": True},
                },
                {
                    "name": "Role",
                    "type": "string",
                    "constraints": {"required": True, "pattern": "(?i:admin|member)"},
                },
                {"name": "Team", "type": "string", "constraints": {"pattern": team_pattern}},
            ],
            "missingValues": [""],
        }
    )
    # frictionless refuses absolute paths unless they are given relative to a basepath.
    resource = Resource(path=path.name, basepath=str(path.parent), schema=schema)
    report = resource.validate(Checklist(), limit_errors=10**9)
    task = report.tasks[0]
    file_errors = [error.message for error in task.errors if not hasattr(error, "row_number")]
    if file_errors:
        sys.exit(f"frictionless could not validate {path}: {file_errors[:3]}")
    by_type = Counter(error.type for error in task.errors)
    invalid_rows = len({error.row_number for error in task.errors if hasattr(error, "row_number")})
    print(
        json.dumps(
            {"rows": task.stats.get("rows"), "invalid_rows": invalid_rows, "errors_by_type": dict(by_type)}
        )
    )


if __name__ == "__main__":
    main()
