"""How the command line prints: lines made safe for a terminal, tables, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

import click

from importer.cells import neutralize, visible


def say(*lines: str, err: bool = False) -> None:
    """Print lines; whatever a user supplied in them (file names, cells, team names) is shown, not
    obeyed: control characters, line breaks included, are printed as ⟨U+XXXX⟩, so a file name
    cannot clear the screen or forge a line of output."""
    for line in lines:
        click.echo(visible(line, one_line=True), err=err)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as CSV, a header of their keys first ("" when there are none)."""
    out = io.StringIO()
    if rows:
        writer = csv.writer(out)
        writer.writerow(list(rows[0]))
        for row in rows:
            # A cell may hold a line break (quoted); nothing that would act on a terminal.
            writer.writerow([visible(neutralize("" if v is None else str(v))) for v in row.values()])
    return out.getvalue()


def table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
    """The rows' `keys` as aligned columns under a header line, or "(none)"."""
    if not rows:
        return ["(none)"]
    # Made visible before measuring, so the columns line up as printed.
    cells = [[visible("" if row[k] is None else str(row[k]), one_line=True) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return [line.rstrip() for line in lines]
