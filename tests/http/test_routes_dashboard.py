"""The dashboard's function view lists its routes and function URLs (headless Chromium)."""

from __future__ import annotations

import shutil

import pytest
from http_helpers import deploy, unique

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not shutil.which(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)


def test_triggers_tab_shows_routes_and_urls(server, lam):
    name = unique("dash")
    deploy(lam, name, f"""
        [http]
        routes = ["GET /{name}/items/{{id}}"]
    """)
    lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.url}/ui/#/fn/{name}/triggers")
            page.locator(f"text=GET /{name}/items/{{id}}").wait_for(timeout=10_000)
            text = page.inner_text("main")
            assert f"{name}.localhost" in text and f"/url/{name}/" in text
            assert "auth none, payload 2.0" in text and not errors
        finally:
            browser.close()
