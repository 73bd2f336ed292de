"""Member importer: spreadsheets in, pending members and per-row reports out."""

from __future__ import annotations

__version__ = "0.1.0"
