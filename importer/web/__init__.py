"""The portal and the API: `importer serve` runs create_app on the same database as the CLI."""

from __future__ import annotations

from importer.web.app import create_app
from importer.web.config import WebConfig

__all__ = ["WebConfig", "create_app"]
