"""ImportResult -> report.html, rejected.csv/.xlsx, errors.csv, summary.json (and pins.csv)."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from importer.cells import neutralize, visible
from importer.forked import Helper, can_fork
from importer.reports.rejected import RejectedView, pin_positions
from importer.reports.workbook import XLSX_MAX_ROWS, write_rejected_xlsx
from importer.sheets import ERRORS_HEADER, SheetSpec
from importer.values import ErrorCode, GeneratedPin, ImportResult, Notice, WarningCode

# report.html lists at most this many rejected rows; the CSVs always have all of them.
HTML_ROW_LIMIT = 2_000
# From this many rejected rows, rejected.xlsx is written in a second process (see _alongside).
XLSX_ALONGSIDE_FROM = 5_000


def _finalize(value: Any) -> Any:
    return visible(value) if isinstance(value, str) else value


_environment = Environment(
    finalize=_finalize,
    loader=PackageLoader("importer", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["thousands"] = "{:,}".format


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], *, mode: int = 0o644) -> None:
    """Write a UTF-8 (with BOM, for Excel) CSV whose every cell is formula-neutralized."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([neutralize(str(h)) for h in header])
        for row in rows:
            writer.writerow([neutralize("" if v is None else str(v)) for v in row])


def write_report(
    result: ImportResult, *, spec: SheetSpec, teams: Sequence[str] = (), xlsx_written: bool = False
) -> Path:
    """Write the batch's report folder; return its path. `teams` fill rejected.xlsx's Team dropdown.

    `xlsx_written`: rejected.xlsx is there already (the checking worker wrote it with
    write_rejected_workbook while the rows were still being saved).
    """
    folder = _report_folder(result)
    if len(result.rejected_rows) > XLSX_MAX_ROWS:
        result.warnings.append(
            Notice(
                WarningCode.REPORT_CUT,
                f"rejected.xlsx holds the first {XLSX_MAX_ROWS:,} rejected rows, as many as a worksheet "
                f"can; rejected.csv has all {len(result.rejected_rows):,}.",
            )
        )
    pin_columns = pin_positions(result.headers, spec)
    view = RejectedView.of(result, pin_columns=pin_columns)
    workbook = folder / "rejected.xlsx"
    with (
        contextlib.nullcontext()
        if xlsx_written
        else _alongside(
            write_rejected_xlsx, result, workbook, pin_columns=pin_columns, spec=spec, teams=teams
        )
    ):
        write_csv(
            folder / "errors.csv",
            ("row", "column", "value", "code", "message"),
            (
                (e.row_number, visible(e.column), visible(e.value), e.code.value, visible(e.message))
                for e in result.errors
            ),
        )
        write_csv(
            folder / "rejected.csv",
            (*view.headers, ERRORS_HEADER),
            ((*view.kept_values(r), view.errors_text(r)) for r in result.rejected_rows),
        )
        if result.generated_pins:
            write_csv(
                folder / "pins.csv",
                GeneratedPin._fields,
                result.generated_pins,
                mode=0o600,
            )
        (folder / "summary.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        html = _render_html(view)
        (folder / "report.html").write_text(html, encoding="utf-8")
    return folder


def write_rejected_workbook(result: ImportResult, *, spec: SheetSpec, teams: Sequence[str] = ()) -> None:
    """rejected.xlsx alone, the slowest file of a big report: it needs only the rejected rows and
    their errors, so the checking worker writes it as soon as the end of the file is read."""
    path = _report_folder(result) / "rejected.xlsx"
    write_rejected_xlsx(result, path, pin_columns=pin_positions(result.headers, spec), spec=spec, teams=teams)


def _report_folder(result: ImportResult) -> Path:
    if result.report_dir is None:
        raise ValueError("the result has no report_dir")
    result.report_dir.mkdir(parents=True, exist_ok=True)
    return result.report_dir


@contextlib.contextmanager
def _alongside(
    write: Callable[..., None], result: ImportResult, path: Path, **options: Any
) -> Iterator[None]:
    """Write rejected.xlsx in a forked process while the block writes the other files.

    The workbook is the slowest file of a big report (about 3 s for 23,000 rejected rows), so
    the two cores share the work. The block's end waits for it; whatever stopped it is raised here,
    as if it had been written inline. Small reports, and processes that may not fork, write it inline.
    """
    if len(result.rejected_rows) < XLSX_ALONGSIDE_FROM or not can_fork():
        write(result, path, **options)
        yield
        return
    helper = Helper(_write_and_tell, write, result, path, options, doing=f"writing {path.name}")
    try:
        yield
        helper.recv()  # written
    finally:
        helper.stop()


def _write_and_tell(
    send: Callable[[object], None],
    write: Callable[..., None],
    result: ImportResult,
    path: Path,
    options: dict[str, Any],
) -> None:
    write(result, path, **options)
    send(None)


def _render_html(view: RejectedView) -> str:
    result = view.result
    rows = []
    for rejected in result.rejected_rows[:HTML_ROW_LIMIT]:
        row_errors = view.errors_of(rejected)
        bad: dict[str, list[str]] = defaultdict(list)
        for error in row_errors:
            bad[error.column].append(error.message)
        cells = [
            {"value": value, "messages": bad.get(header, [])}
            for header, value in zip(result.headers, view.shown_values(rejected), strict=True)
        ]
        rows.append(
            {
                "number": rejected.row_number,
                "cells": cells,
                "codes": sorted({e.code.value for e in row_errors}),
                "errors": row_errors,
            }
        )
    by_code = result.errors_by_code
    by_column = result.errors_by_column
    template = _environment.get_template("report/report.html.j2")
    return template.render(
        result=result,
        summary=result.to_dict(),
        rows=rows,
        hidden_rows=max(0, result.rejected - HTML_ROW_LIMIT),
        by_code=by_code,
        by_column=by_column,
        code_descriptions={code.value: code.description for code in ErrorCode},
        max_code=max(by_code.values(), default=1),
        max_column=max(by_column.values(), default=1),
        skipped=result.skipped[:HTML_ROW_LIMIT],
    )
