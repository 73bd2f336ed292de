"""Workbook files checked before python-calamine parses anything: type, encryption, zip bombs, XML.

Over 400 lines because the zip package's checks are one walk that cannot be cut without passing its
state around: the directory read once, the parts a reader parses found by following relationships,
each of them scanned once for DTDs, encodings and tags. How far the sheets reach is measured in
extents.py, on the pieces this scan yields.
"""

from __future__ import annotations

import codecs
import enum
import posixpath
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from importer.errors import LimitExceededError, UnreadableFileError, UnsupportedFileError
from importer.reading.biff import BiffDamage, BiffEncrypted, measure_xls
from importer.reading.extents import Extent, check_extent, ods_extents, xlsx_extent_exact, xlsx_extent_fast
from importer.reading.problems import first_line, password_protected, printable
from importer.settings import Settings
from importer.values import Limit

_SNIFF_BYTES = 64 * 1024


# --- workbook files, checked before calamine parses anything ------------------------------------
#
# calamine reads a whole sheet into memory, one cell slot for every cell of the sheet's used range,
# and aborts the process (it cannot raise) when that allocation fails: a 1 KB workbook with a value
# in A1 and one in XFD1048576 asks for 17 billion cells. So a workbook's zip directory, its XML and
# the extent of its sheets are checked here first, in a bounded amount of memory and time.

ZIP_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".ods"})
ZIP_MAGIC = b"PK\x03\x04"
CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
# No spreadsheet has this many parts; the zip directory of one that does would itself take a lot of
# memory to read.
MAX_ZIP_PARTS = 10_000
# A part smaller than this cannot hurt whatever its compression ratio (tiny XML compresses well).
_RATIO_EXEMPT_BYTES = 1024 * 1024
_SCAN_BLOCK = 1024 * 1024
# Longer than this, a single XML tag is an attack (or damage), not a spreadsheet.
_MAX_TAG_BYTES = 1024 * 1024
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_EOCD64 = b"PK\x06\x06"
_CFB_ENCRYPTED_STREAMS = frozenset({"EncryptionInfo", "EncryptedPackage"})
_CFB_MAX_DIRECTORY_SECTORS = 4096
_DOCTYPE = re.compile(rb"<!doctype", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\sencoding\s*=\s*["']([^"']*)["']""")
_UTF16_XML = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"<\x00", b"\x00<")


class PartRole(enum.Enum):
    """What a reader does with a part of a zip package (the parts it never parses have none)."""

    XML = "xml"  # parsed as XML: checked
    RELATIONSHIPS = "relationships"  # followed to the other parts: checked
    SHEET = "sheet"  # an .xlsx sheet: checked and measured
    ODS_CONTENT = "ods-content"  # an .ods file's content.xml, every sheet in it: checked and measured


# The parts calamine parses: of an .ods, these; of an .xlsx, these fixed names and the targets of
# the relationships it follows (the workbook, its sheets, shared strings, styles, tables).
_ODS_PARTS = {"content.xml": PartRole.ODS_CONTENT, "meta-inf/manifest.xml": PartRole.XML}
_XLSX_FIXED_PARTS = ("xl/workbook.xml", "xl/sharedstrings.xml", "xl/styles.xml")
_XLSX_SHEET_RELATIONSHIPS = frozenset(
    {"worksheet", "chartsheet", "dialogsheet", "xlmacrosheet", "xlintlmacrosheet"}
)
_XLSX_READ_RELATIONSHIPS = _XLSX_SHEET_RELATIONSHIPS | {"officedocument", "sharedstrings", "styles", "table"}
_XLSX_SHEET_FOLDER = re.compile(r"(?:^|/)(?:worksheets|chartsheets|dialogsheets|macrosheets)/[^/]+$")
_XLSX_RELATIONSHIP = re.compile(rb"<(?:[\w.-]+:)?Relationship(?=[\s/>])([^>]*)>")
# Every byte but '<' and '>': deleting them leaves the markup's outline, checked for a '<' in a tag.
_NOT_BRACKETS = bytes(range(256)).translate(None, b"<>")


def check_workbook_file(path: Path, *, settings: Settings) -> None:
    """Refuse a workbook that is not what its extension says, is encrypted, or would explode."""
    extension = path.suffix.lower()
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    if head.startswith(CFB_MAGIC):
        names = _cfb_names(path)
        if names & _CFB_ENCRYPTED_STREAMS:
            raise UnreadableFileError(password_protected(path))
        if extension != ".xls":
            raise UnsupportedFileError(
                f"{path.name} is not a {extension} workbook but an older Office file (Excel 97-2003 "
                "or another OLE2 document), or it is password-protected. Remove any password, save "
                "it as .xlsx (or give an Excel 97-2003 workbook the .xls extension) and upload it again."
            )
        _check_xls(path, settings=settings)
        return
    if head.startswith(ZIP_MAGIC) or head.startswith(_EOCD):
        if extension not in ZIP_EXTENSIONS:
            raise UnsupportedFileError(
                f"{path.name} is an .xlsx or .ods workbook (a zip package), not an Excel 97-2003 "
                f"{extension} file: give it the right extension and upload it again."
            )
        _check_package(path, settings=settings)
        return
    if _looks_like_text(head):
        raise UnsupportedFileError(
            f"{path.name} is a text file, not a {extension} workbook: if it is a CSV file, give it "
            "the .csv extension (or save it from your spreadsheet program as a workbook) and upload "
            "it again."
        )
    raise UnsupportedFileError(
        f"{path.name} is not a {extension} workbook (it is neither a zip package nor an Excel file): "
        "it is damaged or another kind of file. Save the sheet again and upload that."
    )


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if 0 in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = head.decode("cp1252", errors="replace")
        controls = sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in "\t\r\n")
        return "\ufffd" not in text and controls * 100 <= len(text)
    return True


def _cfb_names(path: Path) -> set[str]:
    """The stream names in an OLE2 compound file's directory (those it can find; maybe none)."""
    names: set[str] = set()
    with path.open("rb") as f:
        header = f.read(512)
        shift = int.from_bytes(header[30:32], "little") if len(header) == 512 else 0
        if shift not in (9, 12):
            return names
        size = 1 << shift
        fat_sector_count = min(int.from_bytes(header[44:48], "little"), 109)
        fat: list[int] = []
        for sector in struct.unpack_from("<109I", header, 76)[:fat_sector_count]:
            f.seek((sector + 1) * size)
            data = f.read(size)
            fat.extend(struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4]))
        sector = int.from_bytes(header[48:52], "little")
        for _ in range(_CFB_MAX_DIRECTORY_SECTORS):
            if sector >= len(fat):  # end of chain (0xFFFFFFFE), or a sector past what we read
                break
            f.seek((sector + 1) * size)
            data = f.read(size)
            for entry in range(0, len(data) - 127, 128):
                length = int.from_bytes(data[entry + 64 : entry + 66], "little")
                if 2 <= length <= 64:
                    names.add(data[entry : entry + length - 2].decode("utf-16-le", errors="replace"))
            sector = fat[sector]
    return names


def _check_xls(path: Path, *, settings: Settings) -> None:
    """Every sheet of an .xls measured from its records (calamine reads them all when it opens)."""
    try:
        sheets = measure_xls(path)
    except BiffEncrypted as exc:
        raise UnreadableFileError(password_protected(path)) from exc
    except (BiffDamage, OSError, ValueError, struct.error) as exc:
        raise UnreadableFileError(
            f"{path.name} is not a valid .xls workbook: {first_line(exc)}; the file is damaged or "
            "crafted. Save it again from your spreadsheet program and upload it again."
        ) from exc
    for sheet in sheets:
        check_extent(path.name, (sheet.rows, sheet.columns), part=f"sheet {sheet.number}", settings=settings)


def _zip_part_count(path: Path) -> int | None:
    """The number of parts a zip's end record declares, read without reading its directory."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        tail_size = min(size, 22 + 65_535 + 20)
        f.seek(size - tail_size)
        tail = f.read(tail_size)
        at = len(tail) - 22 if tail[-22:-18] == _EOCD else tail.rfind(_EOCD)
        if at < 0 or at + 22 > len(tail):
            return None
        count: int = struct.unpack_from("<H", tail, at + 10)[0]
        if count == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == _EOCD64_LOCATOR:
            f.seek(struct.unpack_from("<Q", tail, at - 12)[0])
            record = f.read(56)
            if record[:4] == _EOCD64 and len(record) == 56:
                count = struct.unpack_from("<Q", record, 32)[0]
        return count


def _check_package(path: Path, *, settings: Settings) -> None:
    name, extension = path.name, path.suffix.lower()
    count = _zip_part_count(path)
    if count is not None and count > MAX_ZIP_PARTS:
        raise UnreadableFileError(
            f"{name} is a zip package of {count:,} parts; no workbook has more than {MAX_ZIP_PARTS:,}: "
            "the file is damaged or crafted."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            parts = [info for info in archive.infolist() if not info.is_dir()]
            _check_sizes(name, parts, settings=settings)
            by_key: dict[str, list[zipfile.ZipInfo]] = {}
            for info in parts:
                by_key.setdefault(part_key(info.filename), []).append(info)
            if _ods_encrypted(archive):
                raise UnreadableFileError(password_protected(path))
            if extension == ".ods":
                roles = {key: role for key, role in _ODS_PARTS.items() if key in by_key}
            else:
                roles = _xlsx_roles(archive, by_key, file_name=name)
            for key, role in roles.items():
                if role is PartRole.RELATIONSHIPS:
                    continue  # read (and checked) while the roles were found
                infos = by_key[key]
                _check_packing(path, infos)
                for info in infos:
                    for extent in _scan_part(archive, info, role=role, file_name=name):
                        check_extent(name, extent, part=printable(info.filename), settings=settings)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        zlib.error,
        ValueError,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise UnreadableFileError(
            f"{name} is not a valid {extension} workbook: its zip package is damaged "
            f"({first_line(exc)}). Save it again from your spreadsheet program and upload it again."
        ) from exc


def _check_packing(path: Path, parts: list[zipfile.ZipInfo]) -> None:
    """Parts a reader parses: no compression method spreadsheet programs never use, no zip password."""
    odd = sorted({info.compress_type for info in parts} - {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
    if odd:
        raise UnsupportedFileError(
            f"{path.name} uses a zip compression method spreadsheet programs do not write "
            f"({', '.join(map(str, odd))}). Save it again from your spreadsheet program."
        )
    if any(info.flag_bits & 0x1 for info in parts):
        raise UnreadableFileError(password_protected(path))


def part_key(name: str) -> str:
    """A zip part's name as readers look it up: '/' separated, no leading '/', any case."""
    return name.replace("\\", "/").lstrip("/").lower()


def _xlsx_roles(
    archive: zipfile.ZipFile, by_key: dict[str, list[zipfile.ZipInfo]], *, file_name: str
) -> dict[str, PartRole]:
    """The parts of an .xlsx/.xlsm a reader parses, found as it finds them: by their fixed names
    and by following the package's relationships. Everything else (pictures, thumbnails, macros,
    printer settings, customXml, themes) is never parsed, so never inspected.
    """
    roles: dict[str, PartRole] = {}
    for key in by_key:
        if key.endswith(".rels"):
            roles[key] = PartRole.RELATIONSHIPS
        elif _XLSX_SHEET_FOLDER.search(key):
            roles[key] = PartRole.SHEET
    for key in _XLSX_FIXED_PARTS:
        if key in by_key:
            roles.setdefault(key, PartRole.XML)
    for rels in [key for key, role in roles.items() if role is PartRole.RELATIONSHIPS]:
        source = posixpath.dirname(posixpath.dirname(rels))  # a/_rels/b.xml.rels is about a/b.xml
        for kind, target in _relationships(archive, by_key[rels], file_name=file_name):
            for candidate in _relationship_targets(source, target):
                if candidate in by_key and roles.get(candidate) is not PartRole.SHEET:
                    roles[candidate] = PartRole.SHEET if kind in _XLSX_SHEET_RELATIONSHIPS else PartRole.XML
    return roles


def _relationships(
    archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], *, file_name: str
) -> Iterator[tuple[str, str]]:
    """(kind, target) of the internal relationships a reader follows, from a checked .rels part."""
    for info in infos:
        _check_packing(Path(file_name), [info])
        with archive.open(info) as stream:
            for piece in _xml_pieces(stream, file_name=file_name, part=printable(info.filename)):
                for attributes in _XLSX_RELATIONSHIP.findall(piece):
                    kind, target, mode = (
                        _attribute(name, attributes) for name in (b"Type", b"Target", b"TargetMode")
                    )
                    kind = kind.rsplit("/", 1)[-1].lower()
                    if kind in _XLSX_READ_RELATIONSHIPS and target and mode.lower() != "external":
                        yield kind, target


def _attribute(name: bytes, attributes: bytes) -> str:
    found = re.search(rb"""(?:^|\s)%s\s*=\s*["']([^"']*)["']""" % name, attributes)
    return found.group(1).decode("utf-8", errors="replace") if found else ""


def _relationship_targets(source: str, target: str) -> set[str]:
    """Where a relationship's target may point, every way readers resolve it (more is safer)."""
    found: set[str] = set()
    for text in {target, unquote(target)}:
        text = text.replace("\\", "/")
        if text.startswith("/"):
            paths = [text.lstrip("/")]
        else:  # relative to the source part's folder; calamine also takes it from the package root or xl/
            paths = [posixpath.join(source, text), text, posixpath.join("xl", text)]
        found.update(posixpath.normpath(path).lower() for path in paths)
    return {path for path in found if not path.startswith("..")}


def _check_sizes(name: str, parts: list[zipfile.ZipInfo], *, settings: Settings) -> None:
    """Unpacked size and compression ratio, from the zip directory alone (nothing unpacked)."""
    total = sum(info.file_size for info in parts)
    if total > settings.max_unpacked_bytes:
        raise LimitExceededError(
            f"{name} unpacks to {total:,} bytes; the limit on a workbook's unpacked size is "
            f"{settings.max_unpacked_bytes:,} bytes.",
            limit=Limit.UNPACKED_BYTES,
            allowed=settings.max_unpacked_bytes,
        )
    for info in parts:
        if info.file_size < _RATIO_EXEMPT_BYTES:
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > settings.max_compression_ratio:
            raise LimitExceededError(
                f"{name}: its part {printable(info.filename)} unpacks from {info.compress_size:,} to "
                f"{info.file_size:,} bytes, a compression ratio of {ratio:,.0f} to 1, as a zip bomb "
                f"does; the limit is {settings.max_compression_ratio:,} to 1.",
                limit=Limit.COMPRESSION_RATIO,
                allowed=settings.max_compression_ratio,
            )


def _ods_encrypted(archive: zipfile.ZipFile) -> bool:
    """An OpenDocument file saved with a password says so in its manifest."""
    try:
        info = archive.getinfo("META-INF/manifest.xml")
    except KeyError:
        return False
    with archive.open(info) as stream:
        return b"encryption-data" in stream.read(_MAX_TAG_BYTES)


def _scan_part(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, *, role: PartRole, file_name: str
) -> list[Extent]:
    """Refuse DTDs, non-UTF-8 XML and tags a scan could misread in one part; its sheets' extents."""
    part = printable(info.filename)

    def pieces() -> Iterator[bytes]:
        with archive.open(info) as stream:
            yield from _xml_pieces(stream, file_name=file_name, part=part)

    if role is PartRole.ODS_CONTENT:
        return ods_extents(pieces(), file_name=file_name, part=part)
    if role is not PartRole.SHEET:
        for _ in pieces():
            pass
        return []
    extent = xlsx_extent_fast(pieces())
    if extent is None:
        extent = xlsx_extent_exact(pieces(), file_name=file_name, part=part)
    return [extent]


def _xml_pieces(stream: IO[bytes], *, file_name: str, part: str) -> Iterator[bytes]:
    """A part in checked pieces of about a megabyte, each cut just before a '<' (no tag is split)."""
    tail = b""
    first = True
    while block := stream.read(_SCAN_BLOCK):
        data = tail + block
        cut = data.rfind(b"<")
        piece, tail = (data, b"") if cut < 0 else (data[:cut], data[cut:])
        if len(tail) > _MAX_TAG_BYTES:
            if b">" not in tail:
                raise UnreadableFileError(
                    f"{file_name}: its part {part} has an XML tag longer than {_MAX_TAG_BYTES:,} "
                    "bytes; the file is damaged or crafted."
                )
            piece, tail = data, b""  # a tag, then a long text with no markup in it
        if first and (piece or tail):
            _check_prolog(piece or tail, file_name=file_name, part=part)
            first = False
        if piece:
            _check_markup(piece, file_name=file_name, part=part)
            yield piece
    if tail:
        _check_markup(tail, file_name=file_name, part=part)
        yield tail


def _check_prolog(piece: bytes, *, file_name: str, part: str) -> None:
    if piece.startswith(_UTF16_XML):
        raise UnreadableFileError(
            f"{file_name}: its part {part} is UTF-16 XML, which spreadsheet programs do not write. "
            "Save the file again from your spreadsheet program."
        )
    declared = _XML_ENCODING.match(piece[:512])
    if declared and declared.group(1).lower().replace(b"-", b"").replace(b"_", b"") != b"utf8":
        raise UnreadableFileError(
            f"{file_name}: its part {part} is XML in {printable(declared.group(1).decode('latin-1'))!r}, "
            "not UTF-8 as spreadsheet programs write it. Save the file again from your spreadsheet "
            "program."
        )


def _check_markup(piece: bytes, *, file_name: str, part: str) -> None:
    """No DTD (entity attacks need one), and no '<' inside a tag, which could hide a tag here."""
    if b"<!" in piece and _DOCTYPE.search(piece):
        raise UnreadableFileError(
            f"{file_name}: its part {part} declares a document type (<!DOCTYPE>), which spreadsheet "
            "programs never write and XML entity attacks need; the file was not read. Save it "
            "again from your spreadsheet program."
        )
    outline = piece.translate(None, _NOT_BRACKETS)
    if b"<<" in outline or outline.endswith(b"<"):
        raise UnreadableFileError(
            f"{file_name}: its part {part} is not well-formed XML (a '<' inside a tag). "
            "Save the file again from your spreadsheet program."
        )
