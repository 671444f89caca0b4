"""Durable state: the SQLite database, invocation records, bundles on disk."""
