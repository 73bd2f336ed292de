"""report.html in a real browser (headless Chromium): what a reviewer sees once the page's script ran."""

from __future__ import annotations

import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from importer.pipeline import run_import
from importer.settings import Settings
from importer.store.engine import open_database
from importer.store.orgs import create_organization, create_teams
from importer.values import ImportResult, UserType
from tests.conftest import debian_chromium

WINDOW = (1280, 1600)
BAD_CELL_RGB = (0xFD, 0xE2, 0xE1)  # --bad in report.html.j2
BAR_RGB = (0xD9, 0x30, 0x25)  # the bars of the charts
OWNER = "olive.owner@acme.example"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium (missing: a failure, never a skip)."""
    return debian_chromium()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImportResult, Path]:
    """A realistic import: created, skipped and rejected rows with several error codes."""
    tmp = tmp_path_factory.mktemp("report")
    engine = open_database(f"sqlite:///{tmp / 't.db'}")
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    create_teams(engine, "Acme Corp", ["Sales", "Support", "Engineering", "Warehouse"])
    earlier = tmp / "earlier.csv"
    earlier.write_text("Name,Email,Role\nJean Bartik,jean@example.com,Member\n", encoding="utf-8")
    settings = Settings(report_dir=tmp / "reports")
    options = {
        "org_ref": "Acme Corp",
        "actor_email": OWNER,
        "user_type": UserType.PORTAL,
        "settings": settings,
    }
    run_import(engine, earlier, **options)  # type: ignore[arg-type]
    sheet = tmp / "people.csv"
    sheet.write_text(
        "Name,Email,Role,Team\n"
        "Ada Lovelace,ada@example.com,Admin,Engineering\n"
        "Linus Torvalds,linus@example,Member,Engineering\n"
        "Donald Knuth,donald@example.com,Member,Sails\n"
        "Barbara Liskov,barbara@example.com,Admn,Sales\n"
        "<script>alert(1)</script>,xss@example.com,Owner,\n"
        "Edsger Dijkstra,edsger@example.com,Member,Support\n"
        "Edsger W. Dijkstra,EDSGER@example.com,Member,Support\n"
        "Jean Bartik,jean@example.com,Member,\n",
        encoding="utf-8",
    )
    result = run_import(engine, sheet, **options)  # type: ignore[arg-type]
    engine.dispose()
    assert result.report_dir is not None
    return result, result.report_dir / "report.html"


def run_chromium(chromium: Path, *args: str, url: str, profile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(chromium),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def browser(
    chromium: Path, report: tuple[ImportResult, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """The DOM after scripts ran (plain and with a #code= link) and a screenshot: three Chromiums at once."""
    _, page = report
    tmp = tmp_path_factory.mktemp("chromium")
    png = tmp / "report.png"
    url = page.as_uri()
    runs = {
        "dom": ("--dump-dom",),
        "filtered": ("--dump-dom",),
        "shot": (f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}"),
    }
    jobs = {
        name: run_chromium(
            chromium,
            *args,
            url=url + ("#code=team.unknown" if name == "filtered" else ""),
            profile=tmp / f"profile-{name}",
        )
        for name, args in runs.items()
    }
    out: dict[str, object] = {}
    try:
        for name, job in jobs.items():
            stdout, _ = job.communicate(timeout=60)
            assert job.returncode == 0, f"chromium ({name}) exited with {job.returncode}"
            out[name] = Page(stdout.decode("utf-8"))
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
                job.wait()
    out["png"] = png
    return out


class Page(HTMLParser):
    """The dumped DOM: text by element id, and every element's tag, attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in {"meta", "link", "br", "img", "input", "rect"}:
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, -1, -1):
            if self.elements[self._open[depth]][0] == tag:
                del self._open[depth:]
                break

    def handle_data(self, data: str) -> None:
        for index in self._open:
            self.elements[index][2].append(data)

    def find(self, tag: str, **attrs: str) -> list[tuple[dict[str, str], str]]:
        """Elements with this tag whose attributes contain these values; with their whole text."""
        return [
            (a, " ".join(" ".join(text).split()))
            for t, a, text in self.elements
            if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def text(self, element_id: str) -> str:
        (found,) = [
            " ".join(" ".join(text).split()) for _, a, text in self.elements if a.get("id") == element_id
        ]
        return found


def test_reviewer_sees_counts_marked_cells_and_working_filter(
    report: tuple[ImportResult, Path], browser: dict[str, object]
) -> None:
    result, _ = report
    page = browser["dom"]
    assert isinstance(page, Page)

    assert (result.rows, result.created, len(result.skipped), result.rejected) == (8, 1, 1, 6)
    counts = page.text("counts")
    assert "Rows read 8" in counts and "Created 1" in counts
    assert "Skipped (already members) 1" in counts and "Rejected 6" in counts
    assert page.text("verdict").startswith("6 of 8 rows need fixing.")

    team_cells = page.find("td", class_="bad", **{"data-column": "Team"})
    assert [text for _, text in team_cells] == [
        'Sails There is no team "Sails" in this organization. Did you mean "Sales"? Use an existing '
        "team's name, leave the cell blank, or ask an admin to create the team first. team.unknown"
    ]
    assert ("row-4", "4") in [(a.get("id"), t.split()[0]) for a, t in page.find("tr") if a.get("id")]
    # Data is text, never markup: the name typed as a script tag is shown, not run.
    assert "<script>alert(1)</script>" in page.text("row-6")
    assert len(page.find("script")) == 1

    # The script ran: the filter bar is shown, with one button per error code, and counts the rows.
    ((bar, _),) = page.find("div", id="filter")
    assert "hidden" not in bar
    buttons = [a["data-code"] for a, _ in page.find("button")]
    assert buttons == ["", *result.errors_by_code]
    assert set(buttons) >= {
        "email.invalid",
        "team.unknown",
        "role.invalid",
        "role.not_allowed",
        "email.duplicate_in_file",
    }
    assert page.text("status") == "Showing 6 of 6 rejected rows."
    assert page.text("skipped").endswith(
        "jean@example.com Already a member of this organization; nothing to do. member.exists"
    )

    # Charts are inline SVG, by column and by code.
    assert [a.get("aria-label", "").split(":")[0] for a, _ in page.find("svg", class_="chart")] == [
        "Errors by column",
        "Errors by error code",
    ]

    filtered = browser["filtered"]
    assert isinstance(filtered, Page)
    assert filtered.text("status") == "Showing 1 of 6 rejected rows with team.unknown."
    shown = [
        a["id"] for a, _ in filtered.find("tr") if a.get("id", "").startswith("row-") and "hidden" not in a
    ]
    assert shown == ["row-4"]
    pressed = [a["data-code"] for a, _ in filtered.find("button") if a.get("aria-pressed") == "true"]
    assert pressed == ["team.unknown"]


def test_page_reads_without_scripts(report: tuple[ImportResult, Path]) -> None:
    """As served, before any script: every rejected row visible, no dead filter buttons, no external asset."""
    _, path = report
    page = Page(path.read_text(encoding="utf-8"))
    ((bar, _),) = page.find("div", id="filter")
    assert "hidden" in bar
    assert not [a for a, _ in page.find("tr") if "hidden" in a]
    assert not page.find("link") and not page.find("img")
    assert not [a for a in (a for _, a, _ in page.elements) if a.get("src")]
    assert "@media print" in page.html


def test_screenshot_shows_a_rendered_report(browser: dict[str, object]) -> None:
    png = browser["png"]
    assert isinstance(png, Path)
    assert png.stat().st_size > 30_000
    pixels = decode_png(png)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    colours = pixels.reshape(-1, pixels.shape[2])[:, :3]
    white = np.all(colours == 255, axis=1).mean()
    assert 0.3 < white < 0.97, f"{white:.1%} of the page is white"
    assert np.all(colours == BAD_CELL_RGB, axis=1).sum() > 5_000, "no marked cell is visible"
    assert np.all(colours == BAR_RGB, axis=1).sum() > 2_000, "no chart bar is visible"


def decode_png(path: Path) -> np.ndarray:
    """Pixels of an 8-bit RGB/RGBA PNG (what Chromium writes), without an imaging library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        name, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        if name == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif name == b"IDAT":
            chunks.append(body)
        position += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    image = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], np.frombuffer(raw, np.uint8, stride, start + 1)
        if kind == 0:
            row = line.copy()
        elif kind == 1:
            summed = np.cumsum(line.reshape(width, channels).astype(np.int64), axis=0)
            row = (summed % 256).astype(np.uint8).reshape(stride)
        elif kind == 2:
            row = line + previous
        else:
            row = _unfilter_slow(kind, line.tobytes(), previous.tobytes(), channels)
        image[y] = row
        previous = row
    return image.reshape(height, width, channels)


def _unfilter_slow(kind: int, line: bytes, above: bytes, channels: int) -> np.ndarray:
    """PNG's Average (3) and Paeth (4) filters, which depend on the pixel just decoded."""
    out = bytearray(len(line))
    for i, value in enumerate(line):
        left = out[i - channels] if i >= channels else 0
        up = above[i]
        if kind == 3:
            out[i] = (value + ((left + up) >> 1)) & 255
            continue
        corner = above[i - channels] if i >= channels else 0
        guess = left + up - corner
        da, db, dc = abs(guess - left), abs(guess - up), abs(guess - corner)
        out[i] = (value + (left if da <= db and da <= dc else up if db <= dc else corner)) & 255
    return np.frombuffer(bytes(out), np.uint8)


def test_a_report_listing_the_first_rejected_rows_says_so(
    chromium: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """More rejected rows than the page lists: its counts never contradict each other."""
    tmp = tmp_path_factory.mktemp("many")
    engine = open_database(f"sqlite:///{tmp / 't.db'}")
    create_organization(engine, "Acme Corp", owner_email=OWNER, owner_name="Olive Owner")
    create_teams(engine, "Acme Corp", ["Sales"])
    sheet = tmp / "many.csv"
    rows = [
        f"P{i},p{i}@example.com,{'Boss' if i % 2 else 'Member'},{'Sails' if i % 3 == 0 else ''}"
        for i in range(3_046)
    ]
    sheet.write_text("Name,Email,Role,Team\n" + "\n".join(rows) + "\n", encoding="utf-8")
    options = {"org_ref": "Acme Corp", "actor_email": OWNER, "user_type": UserType.PORTAL}
    result = run_import(engine, sheet, settings=Settings(report_dir=tmp / "reports"), **options)  # type: ignore[arg-type]
    engine.dispose()
    assert result.report_dir is not None and result.rejected > 2_000
    url = (result.report_dir / "report.html").as_uri()
    jobs = {
        name: run_chromium(chromium, "--dump-dom", url=url + fragment, profile=tmp / f"profile-{name}")
        for name, fragment in (("all", ""), ("filtered", "#code=team.unknown"))
    }
    pages = {}
    for name, job in jobs.items():
        stdout, _ = job.communicate(timeout=60)
        assert job.returncode == 0
        pages[name] = Page(stdout.decode("utf-8"))

    total = f"{result.rejected:,}"
    shown_team = sum(1 for row in result.rejected_rows[:2_000] if row.values[3] == "Sails")
    assert pages["all"].text("status") == f"Showing the first 2,000 of {total} rejected rows."
    assert pages["all"].text("shown").startswith(f"Showing the first 2,000 of {total} rejected rows.")
    assert pages["filtered"].text("status") == (
        f"Showing {shown_team:,} with team.unknown among the first 2,000 of {total} rejected rows."
    )
