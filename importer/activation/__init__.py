"""Activation: tokens and links (tokens.py), composing the email (compose.py), the transports
(transports/: one module each behind one base), sending (sending.py), activating (activating.py)."""
