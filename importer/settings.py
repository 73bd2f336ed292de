"""One object holds the defaults; the CLI fills it from options and the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///importer.db"
DEFAULT_CHUNK_ROWS = 25_000
# Below this, starting a second process to check rows costs more than it saves.
DEFAULT_WORKER_FROM_ROWS = 100_000
DEFAULT_REPORT_DIR = Path("reports")
# How long a writer waits for another import to release a SQLite database.
DEFAULT_SQLITE_BUSY_SECONDS = 300.0
# Excel's own limit on the characters in one cell.
MAX_CELL_CHARS = 32_767
# A workbook's sheets are held in memory while they are read, about 32 bytes a cell of their used
# range (blank cells inside it included): 20 million cells is about 640 MB.
MAX_CELLS = 20_000_000


@dataclass(frozen=True, slots=True)
class Settings:
    """Tunable defaults of an import run."""

    chunk_rows: int = DEFAULT_CHUNK_ROWS
    # Files of about this many rows or more are checked in a second process (0: always).
    worker_from_rows: int = DEFAULT_WORKER_FROM_ROWS
    report_dir: Path = DEFAULT_REPORT_DIR
    max_file_bytes: int = 512 * 1024 * 1024
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_compression_ratio: int = 200
    max_rows: int = 2_000_000
    max_columns: int = 200
    max_cell_chars: int = MAX_CELL_CHARS
    max_cells: int = MAX_CELLS
