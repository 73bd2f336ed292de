"""Accounts: password policy and hashing."""
