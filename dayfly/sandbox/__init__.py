"""Isolation backends behind one interface (base.py), with one guarantees wrapper (safe.py)."""
