"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright): it shows a
deployed function, its invocations, a live log tail and a bucket. Screenshots go to
test-artifacts/ (look at them when changing the page)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from browser_helpers import chromium, page_errors, sync_api
from conftest import ALLOW_WEAK, start_server, stop_server
from obs_helpers import deploy, invoke

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

sync_api()  # skips the module without Playwright or Chromium


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors = page_errors(pg)
    yield pg
    context.close()
    assert not errors, errors


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def fn(server) -> tuple[str, str]:
    deploy(server.url, "web-fn")
    rid = ""
    for i in range(5):
        r = invoke(server.url, "web-fn", {"n": i})
        rid = r.headers["x-amzn-requestid"]
    invoke(server.url, "web-fn", {"fail": True})
    return "web-fn", rid


def test_overview_lists_the_function_with_its_invocations(server, page, fn):
    name, _ = fn
    page.goto(f"{server.url}/")
    row = page.locator(f'tr[data-function="{name}"]')
    row.wait_for(timeout=10_000)
    text = row.inner_text()
    assert name in text and "6" in text.split()  # 6 invocations in the last hour
    assert "dead letters" in page.inner_text("main").lower()
    shot(page, "overview")


def test_function_page_shows_charts_and_recent_invocations(server, page, fn):
    name, rid = fn
    page.goto(f"{server.url}/ui/#/fn/{name}")
    page.locator("svg.chart").first.wait_for(timeout=10_000)
    assert page.locator("svg.chart").count() == 2
    assert "Cold-start breakdown" in page.inner_text("main")
    shot(page, "function")
    page.click("text=Invocations")
    page.locator(f'tr[data-request-id="{rid}"]').wait_for(timeout=10_000)
    page.locator(f'tr[data-request-id="{rid}"]').click()
    detail = page.locator("section.detail")
    detail.locator(f"text={rid}").first.wait_for(timeout=5_000)
    assert "START RequestId: " + rid in detail.inner_text()
    shot(page, "invocations")
    page.select_option("select", "error")
    page.locator("tbody tr").first.wait_for(timeout=5_000)
    rows = page.locator("tbody tr").all_inner_texts()
    assert rows and all("error" in r for r in rows), rows


def test_live_log_tail_shows_new_invocations(server, page, fn):
    name, _ = fn
    page.goto(f"{server.url}/ui/#/fn/{name}/logs")
    page.locator("text=following").wait_for(timeout=10_000)
    page.wait_for_timeout(300)  # the stream is open
    r = invoke(server.url, name, {"live": "tail-marker"})
    page.locator("pre.logs", has_text=r.headers["x-amzn-requestid"]).wait_for(timeout=10_000)
    assert "tail-marker" in page.inner_text("pre.logs")
    shot(page, "logs")


def test_configuration_and_triggers_tabs(server, page, fn):
    name, _ = fn
    page.goto(f"{server.url}/ui/#/fn/{name}/configuration")
    page.locator("text=Capabilities").wait_for(timeout=10_000)
    assert "handler.handler" in page.inner_text("main")
    shot(page, "configuration")
    page.goto(f"{server.url}/ui/#/fn/{name}/triggers")
    page.locator("text=dead-letter queue is empty").wait_for(timeout=10_000)


def test_buckets_browse_and_upload(server, page, tmp_path):
    assert httpx.post(f"{server.url}/dayfly/v1/buckets", json={"name": "web-bucket"}).status_code == 201
    r = httpx.put(f"{server.url}/dayfly/v1/buckets/web-bucket/objects/docs/readme.txt",
                  content=b"hello")
    assert r.status_code == 201
    page.goto(f"{server.url}/ui/#/buckets")
    page.locator("text=web-bucket").first.click()
    page.locator("text=docs/").click()
    page.locator("text=readme.txt").wait_for(timeout=10_000)
    upload = tmp_path / "note.txt"
    upload.write_text("uploaded from the browser")
    page.set_input_files("input[type=file]", str(upload))
    page.locator("td", has_text="note.txt").wait_for(timeout=10_000)
    got = httpx.get(f"{server.url}/dayfly/v1/buckets/web-bucket/objects/docs/note.txt")
    assert got.text == "uploaded from the browser"
    shot(page, "bucket")


@pytest.fixture(scope="module")
def weak_node(tmp_path_factory):
    """A node whose operator allowed the weak tier, with one function on it and one not."""
    srv = start_server(tmp_path_factory.mktemp("weak") / "data", *ALLOW_WEAK)
    try:
        zipped = {"content-type": "application/zip"}
        deploy(srv.url, "weak-fn", {"handler.py": "def handler(e, c):\n    return e\n",
                                    "dayfly.toml": 'isolation = "process"\n'}, zipped)
        deploy(srv.url, "strong-fn", {"handler.py": "def handler(e, c):\n    return e\n"}, zipped)
        yield srv
    finally:
        stop_server(srv)


def test_a_process_tier_function_is_labelled_weak_without_limits_it_does_not_enforce(
        weak_node, page):
    label = "weak isolation: no network/filesystem/process isolation"
    page.goto(f"{weak_node.url}/")
    row = page.locator('tr[data-function="weak-fn"]')
    row.wait_for(timeout=10_000)
    assert "process (weak)" in row.inner_text()
    assert "weak" not in page.locator('tr[data-function="strong-fn"]').inner_text()
    page.goto(f"{weak_node.url}/ui/#/fn/weak-fn/configuration")
    page.locator("text=Capabilities").wait_for(timeout=10_000)
    assert label in page.locator(".toolbar").inner_text()  # the page's header badge
    panel = page.locator("section.panel", has_text="Capabilities")
    text = panel.inner_text()
    assert label in text and "Everything else is off" not in text, text
    shown = panel.locator("dt").all_inner_texts()
    assert not {"Network", "Files", "Buckets", "Secrets", "/tmp", "Processes"} & set(shown), shown
    assert {"Isolation", "Memory", "Timeout", "Max output"} <= set(shown), shown
    shot(page, "weak-function")
    # a strong tier's panel still lists every limit
    page.goto(f"{weak_node.url}/ui/#/fn/strong-fn/configuration")
    page.locator("text=Everything else is off").wait_for(timeout=10_000)
    shown = page.locator("section.panel", has_text="Capabilities").locator("dt").all_inner_texts()
    assert {"Network", "/tmp", "Processes"} <= set(shown), shown
    assert label not in page.inner_text("main")
