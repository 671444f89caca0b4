"""Cross-site attacks in a real headless Chromium (issue 12, point 2): a page from another origin
(a second HTTP server this test starts) tries fetch() and form POSTs to deploy and to invoke on
a loopback node without tokens, and a page reached by a rebound name tries the same from the
inside; the node ends with no new function and no invocation. The dashboard loaded from the
node itself keeps working, its POSTs included."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest
from browser_helpers import chromium, one_page_site, page_errors
from conftest import make_zip, start_server, stop_server
from obs_helpers import deploy, runs

CODE = make_zip({"handler.py": "def handler(event, context):\n    return 'planted'\n"})
CREATE = {"FunctionName": "planted", "Runtime": "python3.12", "Handler": "handler.handler",
          "Role": "r", "Code": {"ZipFile": base64.b64encode(CODE).decode()}}
EVIL, REBOUND = "evil.test", "rebound.test"  # both resolved to 127.0.0.1 by Chromium's rules

ATTACK = """<!doctype html><meta charset="utf-8"><title>attack</title>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="f1" method="POST" target="sink1" enctype="text/plain" action="NODE/2015-03-31/functions">
  <input name='FORM_NAME' value='FORM_VALUE'></form>
<form id="f2" method="POST" target="sink2" action="NODE/2015-03-31/functions/fn/invocations">
  <input name="x" value="y"></form>
<script>
const node = "NODE", body = JSON.stringify(CREATE);
const settle = (p) => p.then((r) => r.type + ":" + r.status, (e) => "error:" + e.name);
const loaded = (name) => new Promise((ok) => {
  document.querySelector(`iframe[name=${name}]`).addEventListener("load", () => ok(name));
});
window.results = [];
(async () => {
  const sinks = [loaded("sink1"), loaded("sink2")];
  document.getElementById("f1").submit();
  document.getElementById("f2").submit();
  const invoke = node + "/2015-03-31/functions/fn/invocations";
  window.results.push(...await Promise.all([
    settle(fetch(node + "/2015-03-31/functions", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body})),
    settle(fetch(node + "/2015-03-31/functions", {method: "POST", mode: "no-cors",
      body: new Blob([body])})),
    settle(fetch(node + "/2015-03-31/functions", {method: "POST",
      headers: {"Content-Type": "application/json"}, body})),
    settle(fetch(invoke, {method: "POST", mode: "no-cors", body: "{}"})),
    settle(fetch(invoke, {method: "POST", mode: "no-cors", body: "{}",
      headers: {"Content-Type": "text/plain"}})),
  ]));
  await Promise.all(sinks);
  window.finished = true;
})();
</script>"""


def attack_page(node_url: str) -> bytes:
    text = json.dumps(CREATE)  # a text/plain form body reads `NAME=VALUE`: JSON split at an =
    name, value = text[:-1] + ', "x": "', '"}'
    html = (ATTACK.replace("CREATE", text).replace("FORM_NAME", name)
            .replace("FORM_VALUE", value).replace("NODE", node_url))
    return html.encode()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser-xsite") / "data")
    try:
        deploy(srv.url, "fn")
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def evil_site(node):
    """Another origin: a little HTTP server on another port, serving the attacker's page."""
    with one_page_site(attack_page(node.url)) as port:
        yield f"http://{EVIL}:{port}"


@pytest.fixture(scope="module")
def browser():
    with chromium(EVIL, REBOUND) as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def functions(node) -> set[str]:
    r = httpx.get(f"{node.url}/2015-03-31/functions/")
    return {f["FunctionName"] for f in r.json()["Functions"]}


def test_a_page_of_another_origin_can_neither_deploy_nor_invoke(node, evil_site, page):
    before = runs(node.url, "fn")
    page.goto(f"{evil_site}/attack.html")
    page.wait_for_function("window.finished === true", timeout=30_000)
    results = page.evaluate("window.results")
    # no-cors answers are opaque ("opaque:0"); the CORS one fails at its preflight
    assert results[2].startswith("error:"), results
    assert functions(node) == {"fn"}
    assert runs(node.url, "fn") == before
    # the browser did send them: the node refused each, and says so in its log
    origin = re.escape(f"'{evil_site}'")
    refused = re.findall(r"refused (POST|OPTIONS) (\S+): cross-site request from origin " + origin,
                         node.log())
    assert refused.count(("POST", "/2015-03-31/functions")) >= 3, refused  # 2 fetches + form
    assert refused.count(("POST", "/2015-03-31/functions/fn/invocations")) >= 3, refused
    assert ("OPTIONS", "/2015-03-31/functions") in refused  # the preflight


def test_a_rebound_name_reaches_nothing(node, page):
    rebound = node.url.replace("127.0.0.1", REBOUND)
    response = page.goto(f"{rebound}/ui/")
    assert response is not None and response.status == 403
    assert "DNS rebinding" in page.inner_text("body")
    # a script on that page is same-origin with it, so it may send anything: Host stops it
    out = page.evaluate("""async (body) => {
        const r = await fetch("/2015-03-31/functions", {method: "POST", body,
            headers: {"Content-Type": "application/json"}});
        const i = await fetch("/2015-03-31/functions/fn/invocations", {method: "POST",
            body: "{}", headers: {"Content-Type": "application/json"}});
        return [r.status, i.status];
    }""", json.dumps(CREATE))
    assert out == [403, 403]
    assert functions(node) == {"fn"}


def test_the_dashboard_from_the_node_itself_keeps_working(node, page):
    errors = page_errors(page)
    page.goto(f"{node.url}/")
    page.locator('tr[data-function="fn"]').wait_for(timeout=10_000)
    page.goto(f"{node.url}/ui/#/buckets")
    page.fill("input[aria-label='bucket name']", "from-the-dashboard")
    page.click("text=Create bucket")
    page.wait_for_url(re.compile(r".*#/b/from-the-dashboard$"), timeout=10_000)
    names = [b["name"] for b in httpx.get(f"{node.url}/dayfly/v1/buckets").json()["buckets"]]
    assert "from-the-dashboard" in names
    assert not errors, errors
