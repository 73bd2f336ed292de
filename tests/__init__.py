"""Tests, mirroring the modules of importer/."""
