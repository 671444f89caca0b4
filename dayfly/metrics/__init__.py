"""Prometheus metrics: counters kept by a scheduler observer, the rest read at scrape time."""
