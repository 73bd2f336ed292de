"""The transports that deliver activation messages, one module each behind one base (base.py)."""
