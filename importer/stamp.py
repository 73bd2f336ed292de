"""The sample sheet's stamp (`member-importer/<type>/v<n>`): written by the sample workbooks and
rejected.xlsx (reports/), read back from uploads (reading/), so it lives below both."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DefusedET

from importer.sheets import SheetSpec, load_sheet
from importer.values import UserType

STAMP_PREFIX = "member-importer"
# What sample workbooks carry in their document keywords (File > Properties in Excel).
STAMP_PATTERN = re.compile(rf"{STAMP_PREFIX}/(?P<type>[a-z][a-z-]*)/v(?P<version>\d{{1,6}})")
LISTS_SHEET = "Lists"
INSTRUCTIONS_SHEET = "Instructions"
# The sheets our workbooks carry besides the data, each with the template's stamp in a cell.
SAMPLE_WORKBOOK_SHEETS = frozenset({INSTRUCTIONS_SHEET, LISTS_SHEET})
# An instructions sheet is read this far when an upload is checked for one (it is about 30 rows).
INSTRUCTIONS_ROWS = 100
_CORE_PROPERTIES = "docProps/core.xml"
_CORE_KEYWORDS = "{http://schemas.openxmlformats.org/package/2006/metadata/core-properties}keywords"
_MAX_CORE_BYTES = 256 * 1024
_STAMP_EXTENSIONS = frozenset({".xlsx", ".xlsm"})


def template_stamp(spec: SheetSpec) -> str:
    """The version stamp written into sample workbooks."""
    return f"{STAMP_PREFIX}/{spec.user_type.value}/v{spec.version}"


def holds_template_stamp(rows: Iterable[Sequence[object]]) -> bool:
    """Whether these rows hold a template stamp in a cell of their own, as the instructions sheet does."""
    return any(
        isinstance(value, str) and STAMP_PATTERN.fullmatch(value.strip()) for row in rows for value in row
    )


def read_template_stamp(path: Path) -> str | None:
    """The sample-sheet stamp (`member-importer/<type>/v<n>`) of an .xlsx/.xlsm upload, if it has one."""
    if path.suffix.lower() not in _STAMP_EXTENSIONS:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(_CORE_PROPERTIES)
            if info.file_size > _MAX_CORE_BYTES:
                return None
            with archive.open(info) as member:
                data = member.read(_MAX_CORE_BYTES + 1)
        if len(data) > _MAX_CORE_BYTES:
            return None
        root: Element = DefusedET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except Exception:  # a broken, hostile or foreign file simply has no stamp
        return None
    keywords = root.find(_CORE_KEYWORDS)
    if keywords is None or not keywords.text:
        return None
    match = STAMP_PATTERN.search(keywords.text)
    return match.group() if match else None


def describe_template_stamp(stamp: str | None, *, spec: SheetSpec) -> str | None:
    """A warning when an upload came from another sheet's or an older template, else None."""
    if stamp is None or stamp == template_stamp(spec):
        return None
    match = STAMP_PATTERN.fullmatch(stamp)
    if match is None:
        return None
    user_type, version = match.group("type"), int(match.group("version"))
    if user_type != spec.user_type.value:
        try:
            other = load_sheet(UserType(user_type)).title
        except ValueError:
            other = user_type
        return (
            f"This file was made from the {other} sample sheet but is imported as {spec.title}; "
            f"check the type, or start again from the {spec.title} sample sheet."
        )
    if version < spec.version:
        changed = "; ".join(spec.changes_since(version))
        return (
            f"This file was made from version {version} of the {spec.title} sample sheet; the current "
            f"version is {spec.version}. What changed since: {changed}. Its columns were read by their "
            f"headers; for the current columns, rules and dropdowns download a fresh {spec.title} "
            "sample sheet."
        )
    return (
        f"This file was made from version {version} of the {spec.title} sample sheet, newer than this "
        f"importer knows (version {spec.version}); its columns were read by their headers."
    )
