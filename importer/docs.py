"""The README's generated parts: column tables from schemas/ and the error-code table.

`python -m importer.docs` prints them; tests/test_docs.py checks the README holds them verbatim.
"""

from __future__ import annotations

from importer.sheets import SheetSpec, all_sheets
from importer.values import ErrorCode


def column_table(spec: SheetSpec) -> str:
    """The Markdown table of one sheet's columns."""
    lines = [
        f"**{spec.title}** (`--type {spec.user_type.value}`): {spec.description}",
        "",
        "| column | required | also accepted as | rule | example |",
        "|---|---|---|---|---|",
    ]
    for column in spec.columns:
        aliases = ", ".join(f"`{a}`" for a in column.aliases)
        example = next((e for e in column.examples if e), "")
        lines.append(
            f"| {column.header} | {'yes' if column.required else 'no'} | {aliases} | {column.rule} "
            f"| {example} |"
        )
    return "\n".join(lines)


def error_code_table() -> str:
    """The Markdown table of every error code and what it means."""
    lines = ["| code | meaning |", "|---|---|"]
    lines += [f"| `{code.value}` | {code.description} |" for code in ErrorCode]
    return "\n".join(lines)


def generated_sections() -> str:
    """Everything generated, in README order."""
    return "\n\n".join([*(column_table(s) for s in all_sheets()), error_code_table()])


if __name__ == "__main__":
    print(generated_sections())
