"""Sources of records, one file per kind of file behind one base (base.py)."""
