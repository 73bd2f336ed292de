"""Deterministic Portal Access sheets for the benchmark: realistic rows with ~2% bad ones.

The generator is prefix-stable: the first N rows of a larger file with the same seed are exactly
the rows of the N-row file, so `portal-100000.csv` is the head of `portal-1000000.csv`. Every
file is written next to a `.json` that records what the importer must report for it (rows,
rejected, errors by code); a file is reused when that record and the file's size still match.
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Bump when the rows change, so cached files are regenerated.
GENERATOR_VERSION = 3
DEFAULT_SEED = 20261122
HEADER = ("Name", "Email", "Role", "Team")
TEAMS = ("Sales", "Support", "Engineering", "Marketing", "Finance", "Operations", "Legal", "Warehouse")
BAD_ROW_SHARE = 0.02
BLANK_TEAM_SHARE = 0.15
ADMIN_SHARE = 0.08

FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Christopher", "Lisa", "Daniel", "Nancy", "Matthew", "Betty", "Anthony",
    "Sandra", "Mark", "Margaret", "Donald", "Ashley", "Steven", "Kimberly", "Andrew", "Emily",
    "Paul", "Donna", "Joshua", "Michelle", "Kenneth", "Carol", "Kevin", "Amanda", "Brian",
    "Melissa", "George", "Deborah", "Timothy", "Stephanie", "Ronald", "Rebecca", "Jason", "Sharon",
    "Edward", "Laura", "Jeffrey", "Cynthia", "Ryan", "Amy", "Jacob", "Kathleen", "Gary", "Angela",
    "Nicholas", "Dorothy", "Eric", "Shirley", "Jonathan", "Emma", "Stephen", "Brenda", "Larry",
    "Pamela", "Justin", "Nicole", "Scott", "Anna", "Brandon", "Samantha", "Benjamin", "Katherine",
    "Samuel", "Christine", "Gregory", "Debra", "Alexander", "Rachel", "Patrick", "Carolyn",
    "Frank", "Janet", "Raymond", "Maria", "Jack", "Olivia", "Dennis", "Heather", "Jerry", "Helen",
    "José", "Zoë", "Søren", "Łukasz", "François", "Renée", "Björn", "Chloé", "Ana", "Mateo",
    "Wei", "Aiko", "Priya", "Arjun", "Fatima", "Omar", "Yusuf", "Ingrid", "Sven", "Noa",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera",
    "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz",
    "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy",
    "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed",
    "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson", "Brooks", "Chavez",
    "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes", "Price", "Alvarez", "Castillo",
    "O'Brien", "Müller", "Schäfer", "Nuñez", "Kowalski", "Dubois", "Øster", "Yamamoto", "Chen",
    "Patel", "Singh", "Haddad", "Van der Berg", "McAllister", "da Silva", "Fitzgerald",
)  # fmt: skip
DOMAINS = (
    "example.com", "example.org", "acme.example", "contoso.com", "northwind.io", "fabrikam.net",
    "globex.example", "initech.example",
)  # fmt: skip
MISSPELLED_TEAMS = ("Salse", "Suport", "Enginering", "Marketting", "Finanse", "Ops Team", "Legals", "HR")
BAD_ROLES = ("Manager", "Admn", "Memebr", "Owner", "Guest", "Superuser")
BAD_EMAIL_FORMS = (
    "{local}@",  # nothing after @
    "{local}.{domain}",  # no @
    "{first}..{last}@{domain}",  # two dots in a row
    "{first} {last}@{domain}",  # space
    "{local}@{bare}",  # domain without a dot
    "{local}@@{domain}",  # two @
    "{local}@{domain_comma}",  # comma in the domain
    "{local}.@{domain}",  # dot before @
)

# Which error each kind of bad row produces (duplicates: one error per copy, both copies rejected).
BAD_KINDS = ("email.invalid", "name.missing", "team.unknown", "role.invalid", "role.not_allowed", "duplicate")
BAD_KIND_WEIGHTS = (30, 15, 25, 12, 3, 15)
_FOLD = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "'": "", " ": ""})


def ascii_slug(text: str) -> str:
    """The ASCII, lower-case form of a name, as people put it into an address."""
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return folded.encode("ascii", "ignore").decode().lower()


@dataclass(slots=True)
class Expected:
    """What the importer must report for a generated file (on a fresh organization)."""

    rows: int = 0
    rejected_rows: set[int] = field(default_factory=set)
    errors_by_code: Counter[str] = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        """Rows rejected: the bad rows plus the first copy of each duplicated address."""
        return len(self.rejected_rows)

    def to_dict(self) -> dict[str, object]:
        """The record written next to the file."""
        return {
            "rows": self.rows,
            "rejected": self.rejected,
            "created": self.rows - self.rejected,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
        }


class RowGenerator:
    """Yields (spreadsheet row number, cells); records the expected outcome as it goes."""

    def __init__(self, *, seed: int) -> None:
        self.rng = random.Random(seed)
        self.expected = Expected()
        # Good rows that a later duplicate may copy: (row number, address).
        self._originals: list[tuple[int, str]] = []

    def rows(self, count: int) -> Iterator[tuple[str, str, str, str]]:
        """`count` data rows (header not included)."""
        for index in range(count):
            yield self._row(index)

    def _row(self, index: int) -> tuple[str, str, str, str]:
        rng = self.rng
        row_number = index + 2  # the header is row 1
        self.expected.rows += 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        name = f"{first} {last}"
        if rng.random() < 0.05:
            name = f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        if rng.random() < 0.01:
            name = f"  {name} "  # stray spaces: trimmed, still valid
        domain = rng.choice(DOMAINS)
        local = self._local_part(first, last, index)
        email = f"{local}@{domain}"
        if rng.random() < 0.03:
            email = email.title()  # mixed case: still valid, still unique case-insensitively
        role = "Admin" if rng.random() < ADMIN_SHARE else "Member"
        if rng.random() < 0.05:
            role = role.lower() if rng.random() < 0.7 else role.upper()
        team = "" if rng.random() < BLANK_TEAM_SHARE else rng.choice(TEAMS)
        if team and rng.random() < 0.05:
            team = team.lower()
        if rng.random() >= BAD_ROW_SHARE:
            if rng.random() < 0.01:  # a sample of good rows that later duplicates may copy
                self._originals.append((row_number, email))
            return name, email, role, team
        kind = rng.choices(BAD_KINDS, weights=BAD_KIND_WEIGHTS)[0]
        if kind == "duplicate":
            if not self._originals:
                kind = "email.invalid"
            else:
                original_row, original = self._originals.pop(rng.randrange(len(self._originals)))
                email = original.upper() if rng.random() < 0.3 else original
                self.expected.rejected_rows.update((row_number, original_row))
                self.expected.errors_by_code["email.duplicate_in_file"] += 2
                return name, email, role, team
        self.expected.rejected_rows.add(row_number)
        self.expected.errors_by_code[kind] += 1
        if kind == "email.invalid":
            email = rng.choice(BAD_EMAIL_FORMS).format(
                local=local,
                first=ascii_slug(first),
                last=ascii_slug(last),
                domain=domain,
                bare=domain.split(".")[0],
                domain_comma=domain.replace(".", ",", 1),
            )
        elif kind == "name.missing":
            name = ""
        elif kind == "team.unknown":
            team = rng.choice(MISSPELLED_TEAMS)
        elif kind == "role.invalid":
            role = rng.choice([r for r in BAD_ROLES if r != "Owner"])
        elif kind == "role.not_allowed":
            role = "Owner"  # nobody is invited as Owner
        return name, email, role, team

    def _local_part(self, first: str, last: str, index: int) -> str:
        # The row index keeps every address unique; names never contain digits.
        f, la = ascii_slug(first), ascii_slug(last)
        form = self.rng.randrange(4)
        if form == 0:
            return f"{f}.{la}{index}"
        if form == 1:
            return f"{f[:1]}{la}{index}"
        if form == 2:
            return f"{f}_{la}.{index}"
        return f"{la}.{f}{index}"


@dataclass(frozen=True, slots=True)
class Dataset:
    """A generated file and what the importer must report for it."""

    path: Path
    rows: int
    expected: dict[str, object]
    generated: bool


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _cached(path: Path, *, rows: int, seed: int) -> dict[str, object] | None:
    meta_path = _meta_path(path)
    if not path.exists() or not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = {"version": GENERATOR_VERSION, "seed": seed, "rows": rows, "bytes": path.stat().st_size}
    if any(meta.get(k) != v for k, v in wanted.items()):
        return None
    expected = meta.get("expected")
    return expected if isinstance(expected, dict) else None


def _write_meta(path: Path, *, rows: int, seed: int, expected: Expected) -> dict[str, object]:
    record = expected.to_dict()
    meta = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "rows": rows,
        "bytes": path.stat().st_size,
        "expected": record,
    }
    _meta_path(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return record


def ensure_csv(folder: Path, *, rows: int, seed: int = DEFAULT_SEED) -> Dataset:
    """`portal-<rows>.csv` in `folder`: reused when present and unchanged, else generated."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"portal-{rows}.csv"
    cached = _cached(path, rows=rows, seed=seed)
    if cached is not None:
        return Dataset(path, rows, cached, generated=False)
    generator = RowGenerator(seed=seed)
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(generator.rows(rows))
    partial.replace(path)
    return Dataset(path, rows, _write_meta(path, rows=rows, seed=seed, expected=generator.expected), True)


def ensure_xlsx(folder: Path, *, rows: int, seed: int = DEFAULT_SEED) -> Dataset:
    """`portal-<rows>.xlsx` (openpyxl write-only mode): the same rows as `portal-<rows>.csv`."""
    from openpyxl import Workbook

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"portal-{rows}.xlsx"
    cached = _cached(path, rows=rows, seed=seed)
    if cached is not None:
        return Dataset(path, rows, cached, generated=False)
    generator = RowGenerator(seed=seed)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Portal Access")
    sheet.append(HEADER)
    for row in generator.rows(rows):
        sheet.append(row)
    partial = path.with_name(path.stem + ".partial.xlsx")
    workbook.save(partial)
    partial.replace(path)
    return Dataset(path, rows, _write_meta(path, rows=rows, seed=seed, expected=generator.expected), True)


def seed_organization(url: str, *, name: str, owner: str, members: int, domain: str) -> None:
    """A database with one organization, its Owner and `members` pending portal members (Person i,
    p<i>@domain), written by one SQL statement: seconds for a million, where imports take minutes."""
    from sqlalchemy import text

    from importer.store.engine import open_database
    from importer.store.orgs import create_organization

    engine = open_database(url, create=True)
    org_id = create_organization(engine, name, owner_email=owner, owner_name="Owner")
    with engine.begin() as conn:
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :last) "
                "INSERT INTO members (organization_id, name, name_key, email, email_key, user_type, "
                "role, team_ref, status, created_at) "
                "SELECT :org, 'Person ' || i, 'person ' || i, 'p' || i || :at, 'p' || i || :at, "
                "'portal', 'Member', 0, 'pending', CURRENT_TIMESTAMP FROM n"
            ),
            {"last": members, "org": org_id, "at": f"@{domain}"},
        )
    engine.dispose()  # the last connection closed: SQLite folds the WAL into the file
