"""Checks: the cell rules, whole-file duplicates, addresses and the checking worker."""
