"""The dashboard's function view lists its routes and function URLs (headless Chromium)."""

from __future__ import annotations

from browser_helpers import chromium, page_errors
from http_helpers import deploy, unique

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts


def test_triggers_tab_shows_routes_and_urls(server, lam):
    name = unique("dash")
    deploy(lam, name, f"""
        [http]
        routes = ["GET /{name}/items/{{id}}"]
    """)
    lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    with chromium() as browser:
        page = browser.new_page()
        errors = page_errors(page)
        page.goto(f"{server.url}/ui/#/fn/{name}/triggers")
        page.locator(f"text=GET /{name}/items/{{id}}").wait_for(timeout=10_000)
        text = page.inner_text("main")
        assert f"{name}.localhost" in text and f"/url/{name}/" in text
        assert "auth none, payload 2.0" in text and not errors
