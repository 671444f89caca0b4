"""A real browser for tests: Debian's headless Chromium driven by Playwright, and a one-page
site of another origin to load in it.

    with chromium("evil.test") as browser:    # evil.test resolves to 127.0.0.1 in it
        page = browser.new_context().new_page()
        errors = page_errors(page)             # the page's script errors, as they happen
    with one_page_site(html) as port:          # http://127.0.0.1:PORT/anything serves html
        ...

Without Playwright or Chromium the test (or the fixture's tests) skips, which fails in strict
mode (tests/conftest.py). Not a conftest.py: test modules import it by name.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def sync_api() -> Any:
    """Playwright's sync API; skips the caller (a module when called at its top level) when
    Playwright or Chromium is missing."""
    api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)",
                    allow_module_level=True)
    return api


@contextmanager
def chromium(*loopback_names: str) -> Iterator[Any]:
    """A launched headless Chromium (a Playwright Browser), closed afterwards; each of
    `loopback_names` resolves to 127.0.0.1 in it."""
    args = list(ARGS)
    if loopback_names:
        args.append("--host-resolver-rules=" + ", ".join(f"MAP {name} 127.0.0.1"
                                                          for name in loopback_names))
    with sync_api().sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()


def page_errors(page: Any) -> list[str]:
    """A list that collects the page's uncaught exceptions and console errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


@contextmanager
def one_page_site(page: bytes) -> Iterator[int]:
    """A little HTTP server on 127.0.0.1 (another origin than the node's) that answers every
    GET with `page` as HTML; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
