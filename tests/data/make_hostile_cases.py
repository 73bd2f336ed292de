"""Regenerate the hostile-* files of tests/reading/test_guard.py: `python tests/data/make_hostile_cases.py`.

Deterministic (fixed zip dates, seeded random bytes); tests/reading/test_guard.py checks that the committed
files still match what this script builds. The files are small: the large cases (a 200 MB zip bomb,
a zip of 10,001 parts) are built by fixtures in the tests instead.

Workbooks here are written by hand, part by part, because each case needs XML that no spreadsheet
program (and no library) would write: a DTD, a cell far away, a reference without `r`, UTF-16.
"""

from __future__ import annotations

import io
import posixpath
import random
import struct
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

DATA_DIR = Path(__file__).resolve().parent
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

PORTAL_HEADER = ("Name", "Email", "Role", "Team")
NO_PORTAL_HEADER = ("Name", "Team", "PIN")
ADA = ("Ada Lovelace", "ada@example.com", "Member", "Sales")

# A DTD whose entities expand to 10^9 "lol"s, and two that read a file and a URL.
BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol;" if i == 1 else f"&lol{i - 1};") * 10}">\n' for i in range(1, 10))
    + "]>\n"
)
EXTERNAL_ENTITIES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE sheet [\n'
    ' <!ENTITY file SYSTEM "file:///etc/passwd">\n'
    ' <!ENTITY web SYSTEM "http://127.0.0.1:9/secret">\n'
    "]>\n"
)

Cell = str | int | float | bool | None


def _entry(name: str, compression: int = zipfile.ZIP_DEFLATED) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    entry.compress_type = compression
    entry.external_attr = 0o644 << 16
    return entry


def zip_bytes(parts: Sequence[tuple[str, bytes]]) -> bytes:
    """A zip of the parts, in order, with fixed dates."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in parts:
            stored = name == "mimetype"
            archive.writestr(_entry(name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED), data)
    return out.getvalue()


def cell_xml(ref: str | None, value: Cell) -> str:
    """One <c> element: strings inline, numbers as numbers, booleans as booleans."""
    at = f' r="{ref}"' if ref else ""
    if value is None:
        return f"<c{at}/>"
    if isinstance(value, bool):
        return f'<c{at} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f"<c{at}><v>{value!r}</v></c>"
    return f'<c{at} t="inlineStr"><is><t xml:space="preserve">{escape(value)}</t></is></c>'


def column_letters(number: int) -> str:
    """A (1-based) column number as Excel's letters."""
    letters = ""
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def sheet_xml(rows: Sequence[Sequence[Cell]], *, extra: str = "", prolog: str = _XML_DECLARATION) -> str:
    """A worksheet: the rows from row 1 down (every cell with its r), then `extra` raw row XML."""
    body = "".join(
        f'<row r="{number}">'
        + "".join(cell_xml(f"{column_letters(col)}{number}", v) for col, v in enumerate(row, start=1))
        + "</row>"
        for number, row in enumerate(rows, start=1)
    )
    return f'{prolog}<worksheet xmlns="{_MAIN_NS}"><sheetData>{body}{extra}</sheetData></worksheet>'


def xlsx_bytes(
    sheet: str | bytes,
    *,
    shared_strings: str | None = None,
    styles: str | None = None,
    sheet_target: str = "worksheets/sheet1.xml",
    extra_parts: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """A minimal workbook of one sheet "Members" with the given worksheet (and shared strings) XML.

    The sheet lives at xl/`sheet_target`; `extra_parts` are added as they are (pictures, macros...).
    """
    sheet_part = posixpath.normpath(f"xl/{sheet_target}")
    overrides = [
        ("/xl/workbook.xml", "sheet.main"),
        (f"/{sheet_part}", "worksheet"),
    ]
    relations = [("rId1", "worksheet", sheet_target)]
    if shared_strings is not None:
        overrides.append(("/xl/sharedStrings.xml", "sharedStrings"))
        relations.append(("rId2", "sharedStrings", "sharedStrings.xml"))
    if styles is not None:
        overrides.append(("/xl/styles.xml", "styles"))
        relations.append(("rId3", "styles", "styles.xml"))
    content_types = (
        f'{_XML_DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        + "".join(
            f'<Override PartName="{part}" ContentType="application/'
            f'vnd.openxmlformats-officedocument.spreadsheetml.{kind}+xml"/>'
            for part, kind in overrides
        )
        + "</Types>"
    )
    package_rels = (
        f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" '
        f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    workbook = (
        f'{_XML_DECLARATION}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
        '<sheet name="Members" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    workbook_rels = (
        f'{_XML_DECLARATION}<Relationships xmlns="{_PKG_REL_NS}">'
        + "".join(
            f'<Relationship Id="{rid}" Type="{_REL_NS}/{kind}" Target="{target}"/>'
            for rid, kind, target in relations
        )
        + "</Relationships>"
    )
    parts: list[tuple[str, bytes]] = [
        ("[Content_Types].xml", content_types.encode()),
        ("_rels/.rels", package_rels.encode()),
        ("xl/workbook.xml", workbook.encode()),
        ("xl/_rels/workbook.xml.rels", workbook_rels.encode()),
        (sheet_part, sheet if isinstance(sheet, bytes) else sheet.encode()),
    ]
    if shared_strings is not None:
        parts.append(("xl/sharedStrings.xml", shared_strings.encode()))
    if styles is not None:
        parts.append(("xl/styles.xml", styles.encode()))
    return zip_bytes([*parts, *extra_parts])


def shared_strings_xml(*items: str, prolog: str = _XML_DECLARATION) -> str:
    """A shared-strings part; each item is raw XML text (entities allowed)."""
    body = "".join(f"<si><t>{item}</t></si>" for item in items)
    return f'{prolog}<sst xmlns="{_MAIN_NS}" count="{len(items)}" uniqueCount="{len(items)}">{body}</sst>'


def _shared_cell(ref: str, index: int) -> str:
    return f'<c r="{ref}" t="s"><v>{index}</v></c>'


def _header_row() -> str:
    return (
        '<row r="1">'
        + "".join(cell_xml(f"{chr(65 + i)}1", h) for i, h in enumerate(PORTAL_HEADER))
        + "</row>"
    )


def entity_sheet_in_shared_strings(prolog: str, *entities: str) -> bytes:
    """Row 2's Name (and Email) come from shared strings that use the DTD's entities."""
    cells = [_shared_cell(f"{chr(65 + i)}2", i) for i in range(len(entities))]
    cells += [cell_xml(f"{chr(65 + i)}2", v) for i, v in enumerate(ADA) if i >= len(entities)]
    sheet = (
        f'{_XML_DECLARATION}<worksheet xmlns="{_MAIN_NS}"><sheetData>{_header_row()}'
        f'<row r="2">{"".join(cells)}</row></sheetData></worksheet>'
    )
    return xlsx_bytes(sheet, shared_strings=shared_strings_xml(*entities, prolog=prolog))


def entity_sheet(prolog: str, *entities: str) -> bytes:
    """Row 2's Name (and Email) are inline strings made of the DTD's entities."""
    cells = [
        f'<c r="{chr(65 + i)}2" t="inlineStr"><is><t>{entity}</t></is></c>'
        for i, entity in enumerate(entities)
    ]
    cells += [cell_xml(f"{chr(65 + i)}2", v) for i, v in enumerate(ADA) if i >= len(entities)]
    sheet = (
        f'{prolog}<worksheet xmlns="{_MAIN_NS}"><sheetData>{_header_row()}'
        f'<row r="2">{"".join(cells)}</row></sheetData></worksheet>'
    )
    return xlsx_bytes(sheet)


def ods_bytes(
    content_body: str,
    *,
    prolog: str = '<?xml version="1.0" encoding="UTF-8"?>\n',
    extra_parts: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """A minimal OpenDocument spreadsheet around raw table XML."""
    content = (
        f"{prolog}<office:document-content"
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body><office:spreadsheet>{content_body}</office:spreadsheet></office:body>"
        "</office:document-content>\n"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:version="1.2"'
        ' manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>\n"
    )
    return zip_bytes(
        [
            ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"),
            ("META-INF/manifest.xml", manifest.encode()),
            ("content.xml", content.encode()),
            *extra_parts,
        ]
    )


def ods_cell(value: str, *, repeat: int = 1) -> str:
    """A string cell, repeated `repeat` times across."""
    times = f' table:number-columns-repeated="{repeat}"' if repeat > 1 else ""
    return (
        f'<table:table-cell office:value-type="string"{times}>'
        f"<text:p>{escape(value)}</text:p></table:table-cell>"
    )


def ods_row(*cells: str, repeat: int = 1) -> str:
    """A row of cells, repeated `repeat` times down."""
    times = f' table:number-rows-repeated="{repeat}"' if repeat > 1 else ""
    return f"<table:table-row{times}>{''.join(cells)}</table:table-row>"


def ods_table(*rows: str) -> str:
    """The sheet "Members"."""
    return f'<table:table table:name="Members">{"".join(rows)}</table:table>'


def _ods_portal_rows() -> list[str]:
    return [ods_row(*map(ods_cell, PORTAL_HEADER)), ods_row(*map(ods_cell, ADA))]


def encrypted_ods() -> bytes:
    """What LibreOffice writes for a password-protected spreadsheet: encryption data in the manifest."""
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:version="1.2"'
        ' manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"'
        ' manifest:size="1234"><manifest:encryption-data manifest:checksum-type="SHA1/1K"'
        ' manifest:checksum="AAAA"><manifest:algorithm manifest:algorithm-name="Blowfish CFB"'
        ' manifest:initialisation-vector="AAAA"/><manifest:key-derivation'
        ' manifest:key-derivation-name="PBKDF2" manifest:iteration-count="1024" manifest:salt="AAAA"/>'
        "</manifest:encryption-data></manifest:file-entry></manifest:manifest>\n"
    )
    return zip_bytes(
        [
            ("mimetype", b"application/vnd.oasis.opendocument.spreadsheet"),
            ("META-INF/manifest.xml", manifest.encode()),
            ("content.xml", random.Random(6).randbytes(1234)),
        ]
    )


# --- OLE2 compound files (what Office writes for a password-protected workbook) -----------------

_FREE, _END_OF_CHAIN, _FAT_SECTOR, _NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def _directory_entry(name: str, kind: int, *, start: int, size: int, child: int, right: int) -> bytes:
    encoded = (name + "\0").encode("utf-16-le") if name else b""
    return (
        encoded.ljust(64, b"\0")
        + struct.pack("<HBB", len(encoded), kind, 1)
        + struct.pack("<III", _NO_STREAM, right, child)
        + bytes(16 + 4 + 16)
        + struct.pack("<IQ", start, size)
    )


def cfb_bytes(streams: Sequence[tuple[str, bytes]]) -> bytes:
    """A minimal OLE2 compound file (version 3, 512-byte sectors) holding the streams.

    Each stream is padded to 4,096 bytes so that it lives in ordinary sectors (no mini stream);
    streams must be given in the directory's sort order (shorter names first).
    """
    size = 512
    body, fat, entries = b"", [_FAT_SECTOR, _END_OF_CHAIN], []
    for index, (name, content) in enumerate(streams):
        data = content.ljust(4096, b"\0")
        count = -(-len(data) // size)
        start = 2 + len(body) // size
        fat += [start + i + 1 for i in range(count - 1)] + [_END_OF_CHAIN]
        body += data.ljust(count * size, b"\0")
        right = index + 2 if index + 1 < len(streams) else _NO_STREAM
        entries.append(
            _directory_entry(name, 2, start=start, size=len(content), child=_NO_STREAM, right=right)
        )
    root = _directory_entry("Root Entry", 5, start=_END_OF_CHAIN, size=0, child=1, right=_NO_STREAM)
    directory = b"".join([root, *entries])
    while len(directory) < size:
        directory += _directory_entry("", 0, start=0, size=0, child=_NO_STREAM, right=_NO_STREAM)
    header = (
        bytes.fromhex("d0cf11e0a1b11ae1")
        + bytes(16)
        + struct.pack("<HHHHH", 0x003E, 3, 0xFFFE, 9, 6)
        + bytes(6)
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, _END_OF_CHAIN, 0, _END_OF_CHAIN, 0)
        + struct.pack("<109I", 0, *([_FREE] * 108))
    )
    fat_sector = struct.pack(f"<{size // 4}I", *(fat + [_FREE] * (size // 4 - len(fat))))
    return header + fat_sector + directory[:size] + body


def encrypted_xlsx() -> bytes:
    """An Office-encrypted workbook's container: EncryptionInfo and EncryptedPackage streams."""
    noise = random.Random(5)
    info = struct.pack("<HHI", 4, 4, 0x40) + b'<?xml version="1.0"?><encryption/>'
    return cfb_bytes([("EncryptionInfo", info), ("EncryptedPackage", noise.randbytes(8192))])


# --- Excel 97-2003 (.xls): BIFF8 records in a compound file's Workbook stream --------------------


def biff_record(kind: int, data: bytes) -> bytes:
    """One BIFF record: type, length, data."""
    return struct.pack("<HH", kind, len(data)) + data


def biff_label(row: int, column: int, text: str) -> bytes:
    """A LABEL record: a string cell (8-bit characters)."""
    encoded = text.encode("latin-1")
    return biff_record(0x0204, struct.pack("<HHHHB", row, column, 15, len(encoded), 0) + encoded)


def biff_dimensions(first_row: int, end_row: int, first_column: int, end_column: int) -> bytes:
    """A BIFF8 DIMENSIONS record: the sheet's range as declared (ends exclusive)."""
    return biff_record(0x0200, struct.pack("<IIHHH", first_row, end_row, first_column, end_column, 0))


def xls_bytes(
    rows: Sequence[Sequence[str]], *, dimensions: bytes | None = None, extra_records: bytes = b""
) -> bytes:
    """An Excel 97-2003 workbook of one sheet "Members": the rows as LABEL cells from A1, then
    `extra_records`; its DIMENSIONS record is the rows' own range unless `dimensions` is given.
    """

    def bof(kind: int) -> bytes:
        return biff_record(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 0x07CC, 0, 6))

    eof = biff_record(0x000A, b"")
    name = b"Members"

    def globals_(sheet_at: int) -> bytes:
        boundsheet = struct.pack("<IBBBB", sheet_at, 0, 0, len(name), 0) + name
        return (
            bof(0x0005) + biff_record(0x0042, struct.pack("<H", 1200)) + biff_record(0x0085, boundsheet) + eof
        )

    width = max((len(row) for row in rows), default=0)
    cells = b"".join(
        biff_label(r, c, text) for r, row in enumerate(rows) for c, text in enumerate(row) if text
    )
    sheet = (
        bof(0x0010) + (dimensions or biff_dimensions(0, len(rows), 0, width)) + cells + extra_records + eof
    )
    # 4,096 bytes at least, so that the stream lives in ordinary sectors (see cfb_bytes).
    return cfb_bytes([("Workbook", (globals_(len(globals_(0))) + sheet).ljust(4096, b"\0"))])


# --- text files -----------------------------------------------------------------------------------


def csv_bytes(*lines: str) -> bytes:
    """UTF-8 lines joined by CRLF (cells already quoted as the case needs)."""
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# Each name breaks one rule of name.invalid; each address one of email.invalid; the last rows are
# valid after trimming no-break spaces, and carry markup that must come out escaped.
CONTROL_ROWS: tuple[tuple[str, str], ...] = (
    ("Carriage\rReturn", "cr@example.com"),
    ("Line\nFeed", "lf@example.com"),
    ("Nul\x00Byte", "nul@example.com"),
    ("Bell\x07Char", "bell@example.com"),
    ("Escape\x1bChar", "esc@example.com"),
    ("Next\x85Line", "nel@example.com"),
    ("Csi\x9bChar", "csi@example.com"),
    ("Delete\x7fChar", "del@example.com"),
    ("Evil\u202eReversed", "rlo@example.com"),
    ("Isolate\u2066Name", "lri@example.com"),
    ("Zero Width", "zero\u200bwidth@example.com"),
    ("Control Mail", "con\x01trol@example.com"),
    ("Joiner Mail", "zw\u200djoin@example.com"),
    ("\u00a0No Break\u00a0", "\u00a0nbsp@example.com\u00a0"),
    ("<script>alert('name')</script>", "markup@example.com"),
)


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def controls_csv() -> bytes:
    """Names and addresses with control, bidi and zero-width characters, and markup."""
    lines = ["Name,Email,Role,Team"]
    lines += [f"{_quoted(name)},{_quoted(email)},Member," for name, email in CONTROL_ROWS]
    lines.append('Markup Team,team@example.com,<b>Member</b>,"<img src=x onerror=alert(1)>"')
    return csv_bytes(*lines)


CASES: dict[str, Callable[[], bytes]] = {
    # XML attacks inside workbooks: entity expansion and external entities, in the shared strings
    # and in the sheet; the same in an OpenDocument file.
    "hostile-billion-laughs.xlsx": lambda: entity_sheet_in_shared_strings(BILLION_LAUGHS, "&lol9;"),
    "hostile-billion-laughs-sheet.xlsx": lambda: entity_sheet(BILLION_LAUGHS, "&lol9;"),
    "hostile-xxe.xlsx": lambda: entity_sheet_in_shared_strings(EXTERNAL_ENTITIES, "&file;", "&web;"),
    "hostile-xxe-sheet.xlsx": lambda: entity_sheet(EXTERNAL_ENTITIES, "&file;", "&web;"),
    "hostile-xxe.ods": lambda: ods_bytes(
        ods_table(
            ods_row(*map(ods_cell, PORTAL_HEADER)),
            ods_row(
                '<table:table-cell office:value-type="string"><text:p>&file;</text:p></table:table-cell>'
            ),
        ),
        prolog=EXTERNAL_ENTITIES,
    ),
    # A DTD with no entity used: still refused (no spreadsheet program writes one).
    "hostile-doctype-only.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], prolog=_XML_DECLARATION + "<!DOCTYPE worksheet>\n")
    ),
    # XML that a scan could read differently from calamine: UTF-16, another encoding, '<' in a tag.
    "hostile-utf16-sheet.xlsx": lambda: xlsx_bytes(
        b"\xff\xfe"
        + sheet_xml([PORTAL_HEADER, ADA], prolog='<?xml version="1.0" encoding="UTF-16"?>').encode(
            "utf-16-le"
        )
    ),
    "hostile-latin1-sheet.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], prolog='<?xml version="1.0" encoding="ISO-8859-1"?>')
    ),
    "hostile-lt-in-tag.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="3"><c foo="<" r="XFD1048576"><v>1</v></c></row>')
    ),
    "hostile-gt-in-tag.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="3"><c foo=">" r="XFD3"><v>1</v></c></row>')
    ),
    # Sheets that would make calamine allocate billions of cells (it aborts the process).
    "hostile-far-cell.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    ),
    "hostile-tall-wide.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="1048576"><c r="GR1048576"><v>1</v></c></row>')
    ),
    # Cells without r: placed one right of the last; rows without r: one below.
    "hostile-no-ref-wide.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra="<row>" + "<c><v>1</v></c>" * 300 + "</row>")
    ),
    "hostile-no-ref-tall.xlsx": lambda: xlsx_bytes(
        sheet_xml(
            [PORTAL_HEADER, ADA],
            extra="<row>"
            + "<c><v>1</v></c>" * 150
            + "</row>"
            + "<row></row>" * 100
            + "<row><c><v>1</v></c></row>",
        )
    ),
    "hostile-repeat-columns.ods": lambda: ods_bytes(
        ods_table(*_ods_portal_rows(), ods_row(ods_cell("x", repeat=16_384)))
    ),
    "hostile-repeat-rows.ods": lambda: ods_bytes(
        ods_table(*_ods_portal_rows(), ods_row(ods_cell("x", repeat=150), repeat=1_000_000))
    ),
    # .xls sheets calamine would reserve or allocate billions of cells for (it aborts the process):
    # a 5.6 KB file declaring 4 billion rows; a cell at column 65,536 (BIFF8 stops at 256).
    "hostile-xls-huge-dimensions.xls": lambda: xls_bytes(
        [PORTAL_HEADER, ADA], dimensions=biff_dimensions(0, 0xFFFFFFFF, 0, 0xFFFF)
    ),
    "hostile-xls-far-column.xls": lambda: xls_bytes(
        [PORTAL_HEADER, ADA], extra_records=biff_label(65_535, 65_535, "x")
    ),
    # An honest sheet with a value in its last cell, IV65536: 1.2 GB in calamine, unless measured.
    "hostile-xls-last-cell.xls": lambda: xls_bytes(
        [PORTAL_HEADER, ADA], extra_records=biff_label(65_535, 255, "x")
    ),
    # Formatted empty cells (BLANK, MULBLANK) to the sheet's last cell, declared by DIMENSIONS: read.
    "portal-formatted-blanks.xls": lambda: xls_bytes(
        [PORTAL_HEADER, ADA],
        dimensions=biff_dimensions(0, 65_536, 0, 256),
        extra_records=biff_record(0x0201, struct.pack("<HHH", 65_535, 255, 15))
        + biff_record(
            0x00BE, struct.pack("<HH", 3, 4) + struct.pack("<H", 15) * 252 + struct.pack("<H", 255)
        ),
    ),
    # Parts no reader parses as XML (pictures, macros, printer settings, a UTF-16 customXml part, a
    # thumbnail) and formatted empty cells to column XFD: the sheet is read as any other.
    "portal-packaged.xlsx": lambda: xlsx_bytes(
        sheet_xml(
            [PORTAL_HEADER, ADA],
            extra='<row r="3"><c r="XFD3" s="1"/></row><row r="4"><c r="XFD4" s="1"></c></row>'
            '<row r="1048576"><c r="XFD1048576"><f>A1</f></c></row>',
        ),
        extra_parts=[
            ("xl/media/image1.png", b"\x89PNG\r\n\x1a\n<<>><!DOCTYPE " + random.Random(7).randbytes(2000)),
            ("xl/vbaProject.bin", bytes.fromhex("d0cf11e0a1b11ae1") + random.Random(8).randbytes(2000)),
            ("xl/printerSettings/printerSettings1.bin", b"<<\x00\x01" + random.Random(9).randbytes(500)),
            ("customXml/item1.xml", '<?xml version="1.0" encoding="UTF-16"?><data/>'.encode("utf-16")),
            ("docProps/thumbnail.jpeg", b"\xff\xd8\xff<<" + random.Random(10).randbytes(500)),
        ],
    ),
    # Formatted empty cells without references (placed one right of the other), 300 wide: read.
    "portal-formatted-no-ref.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="3">' + '<c s="1"></c>' * 300 + "</row>")
    ),
    "portal-thumbnail.ods": lambda: ods_bytes(
        ods_table(*_ods_portal_rows()),
        extra_parts=[("Thumbnails/thumbnail.png", b"\x89PNG\r\n\x1a\n<<" + random.Random(11).randbytes(900))],
    ),
    # A sheet where no one would look for it, found as readers find it (through the relationships):
    # still measured and refused.
    "hostile-far-cell-elsewhere.xlsx": lambda: xlsx_bytes(
        sheet_xml([PORTAL_HEADER, ADA], extra='<row r="1"><c r="XFD1"><v>1</v></c></row>'),
        sheet_target="media/image1.png",
    ),
    # Encrypted workbooks, and files that are not what their extension says.
    "hostile-encrypted.xlsx": encrypted_xlsx,
    "hostile-encrypted.ods": encrypted_ods,
    "hostile-ole-junk.xlsx": lambda: bytes.fromhex("d0cf11e0a1b11ae1") + random.Random(1).randbytes(4088),
    "hostile-random.xlsx": lambda: random.Random(2).randbytes(4096),
    "hostile-random.csv": lambda: random.Random(3).randbytes(4096),
    "hostile-empty.xlsx": lambda: b"",
    "hostile-csv-named.ods": lambda: csv_bytes("Name,Email,Role,Team", ",".join(ADA)),
    "hostile-xlsx-named.xls": lambda: xlsx_bytes(sheet_xml([PORTAL_HEADER, ADA])),
    "hostile-zip-not-workbook.xlsx": lambda: zip_bytes([("readme.txt", b"not a workbook")]),
    # Broken text files.
    "hostile-unterminated-quote.csv": lambda: csv_bytes(
        "Name,Email,Role,Team",
        "Ada Lovelace,ada@example.com,Member,Sales",
        '"Grace Hopper,grace@example.org,Member,',
        "Alan Turing,alan@example.org,Member,",
        "Edsger Dijkstra,edsger@example.org,Member,",
    ),
    "hostile-duplicate-headers.csv": lambda: csv_bytes(
        "Name,Email,Role,Name", "Ada Lovelace,ada@example.com,Member,Ada"
    ),
    # UTF-16 without a byte-order mark (half its bytes NUL): a file-level error, not garbage.
    "hostile-utf16-no-bom.csv": lambda: "Name,Email,Role\r\nAda,ada@example.com,Member\r\n".encode(
        "utf-16-be"
    ),
    # Markup and control characters, through the whole pipeline.
    "hostile-controls.csv": controls_csv,
    # Look-alike addresses of ali@example.com: dotless i, full-width a, Cyrillic a; and the same
    # address in capitals (which is the existing member).
    "hostile-lookalike.csv": lambda: csv_bytes(
        "Name,Email,Role,Team",
        "Dotless,al\u0131@example.com,Member,",
        "Fullwidth,\uff41li@example.com,Member,",
        "Cyrillic,\u0430li@example.com,Member,",
        "Capitals,ALI@example.com,Member,",
    ),
    # Excel coercions: numbers and dates where text belongs.
    "hostile-pin-numbers.xlsx": lambda: xlsx_bytes(
        sheet_xml(
            [
                NO_PORTAL_HEADER,
                ("Six Digit Phone", "", 123456),
                ("Lost Zeros Phone", "", 42),
                ("Float Phone", "", 1234.5),
                ("Huge Phone", "", 12345678901),
                ("Text Phone", "", "0042"),
            ]
        )
    ),
    "hostile-dates-as-text.xlsx": lambda: xlsx_bytes(
        sheet_xml(
            [PORTAL_HEADER, (45292, 45292.5, True, 3.25), ("Ada Lovelace", "ada@example.com", "Member", "")]
        )
        .replace('<row r="2">', '<row r="2">', 1)
        .replace('<c r="A2">', '<c r="A2" s="1">', 1)
        .replace('<c r="B2">', '<c r="B2" s="2">', 1),
        styles=(
            f'{_XML_DECLARATION}<styleSheet xmlns="{_MAIN_NS}"><cellXfs count="3">'
            '<xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/>'
            '<xf numFmtId="22" applyNumberFormat="1"/>'
            "</cellXfs></styleSheet>"
        ),
    ),
}


def build_cases() -> dict[str, bytes]:
    """Every hostile data file by name, as bytes."""
    return {name: build() for name, build in CASES.items()}


def main(out_dir: Path = DATA_DIR) -> None:
    """Write every hostile data file into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in build_cases().items():
        (out_dir / name).write_bytes(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR)
