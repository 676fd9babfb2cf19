"""Proving a token works: connectivity checks, SQL checks and hooks (child processes)."""
