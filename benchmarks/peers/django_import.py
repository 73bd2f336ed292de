"""Peer: django-import-export imports a Portal Access CSV into a Django model on SQLite.

Usage: django_import.py CSV DB_PATH
Settings are configured in memory; the table is created with the schema editor; rows are
validated with full_clean (EmailField, choices, max_length) and written in one transaction, row by
row: the bulk mode (use_bulk) rolls the whole import back when two rows of one batch share an
address, so it cannot load a file with in-file duplicates.
Prints JSON counts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    """Import the file and print {rows, created, invalid, errors}."""
    csv_path, db_path = Path(sys.argv[1]), sys.argv[2]
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        INSTALLED_APPS=["import_export", "benchapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()

    import tablib
    from benchapp.models import Member
    from django.db import connection
    from import_export import fields, resources

    with connection.schema_editor() as editor:
        editor.create_model(Member)

    class MemberResource(resources.ModelResource):
        name = fields.Field(attribute="name", column_name="Name")
        email = fields.Field(attribute="email", column_name="Email")
        role = fields.Field(attribute="role", column_name="Role")
        team = fields.Field(attribute="team", column_name="Team")

        class Meta:
            model = Member
            fields = ("name", "email", "role", "team")
            import_id_fields = ("email",)
            clean_model_instances = True
            skip_diff = True
            use_transactions = True

        def before_import_row(self, row: dict[str, str], **kwargs: object) -> None:
            # The sheet's roles are case-insensitive; Django's choices are not.
            row["Role"] = (row.get("Role") or "").strip().title()

    dataset = tablib.Dataset().load(csv_path.read_text(encoding="utf-8"), format="csv")
    result = MemberResource().import_data(dataset, dry_run=False, raise_errors=False)
    print(
        json.dumps(
            {
                "rows": result.total_rows,
                "totals": {k: v for k, v in result.totals.items() if v},
                "invalid": len(result.invalid_rows),
                "errors": len(result.row_errors()) + len(result.base_errors),
                "table_rows": Member.objects.count(),
            }
        )
    )


if __name__ == "__main__":
    main()
