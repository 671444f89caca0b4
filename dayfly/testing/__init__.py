"""Test doubles users and our own tests can use: an in-memory sandbox backend."""
