"""The web dashboard: static files only (HTML, CSS, vanilla JS), talking to the same HTTP API as
the CLI. `STATIC` is served at /ui/ by the gateway."""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
