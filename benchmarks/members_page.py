"""`importer members --limit 50 --format json` at page 1 and at the last page of a million members.

    .venv/bin/python benchmarks/members_page.py [MEMBERS] [RUNS]

Builds a SQLite database of MEMBERS members (default 1,000,000) in one organization with one SQL
statement (as the tests do: a recursive CTE, no import), walks every page of 50 with the library
(accounts.listing.list_members and its cursor) to find the last one, then times the command, as a
user runs it, RUNS times each (default 5) at page 1 and at the last page, alternately, and prints
the medians. Keyset paging: the last page should cost what the first costs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datagen

from importer.accounts.listing import list_members
from importer.store.engine import open_database

PAGE = 50


def build(url: str, members: int) -> float:
    """The database: one organization, its Owner and `members` pending portal members; seconds."""
    started = time.perf_counter()
    datagen.seed_organization(
        url, name="Big", owner="owner@big.example", members=members, domain="big.example"
    )
    return time.perf_counter() - started


def walk(url: str) -> tuple[int, int, str | None, float]:
    """Every page through the library: (pages, members seen, the last page's cursor, seconds)."""
    engine = open_database(url)
    started = time.perf_counter()
    pages = seen = 0
    after: str | None = None
    while True:
        page = list_members(engine, "Big", limit=PAGE, after=after)
        pages += 1
        seen += len(page.members)
        if page.next is None:
            break
        after = page.next
    engine.dispose()
    return pages, seen, after, time.perf_counter() - started  # `after` fetched the last page


def time_cli(url: str, extra: list[str]) -> float:
    """One run of `importer members --limit 50 --format json` (process start included); seconds."""
    command = [sys.executable, "-m", "importer", "--db", url, "members", "--org", "Big", "--limit", str(PAGE)]
    started = time.perf_counter()
    subprocess.run([*command, *extra, "--format", "json"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    """Build, walk, time, print."""
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'members.db'}"
        built = build(url, members)
        print(f"built {members + 1:,} members in {built:.1f} s")
        pages, seen, last, walked = walk(url)
        assert seen == members + 1, (seen, members)
        print(f"walked {pages:,} pages of {PAGE} with the library in {walked:.1f} s "
              f"({walked / pages * 1000:.2f} ms a page)")  # fmt: skip
        first: list[float] = []
        final: list[float] = []
        for _ in range(runs):
            first.append(time_cli(url, []))
            final.append(time_cli(url, ["--after", last] if last else []))
        one, end = statistics.median(first), statistics.median(final)
        print(f"importer members --limit {PAGE} --format json, median of {runs}, process start included:")
        print(f"  page 1:            {one * 1000:7.1f} ms")
        print(f"  page {pages:,} (last): {end * 1000:7.1f} ms  ({end / one:.2f}x page 1)")


if __name__ == "__main__":
    main()
