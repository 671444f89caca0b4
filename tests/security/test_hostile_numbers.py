"""Numbers in the Lambda and dayfly APIs as an attacker writes them: '²' (a digit to
`str.isdigit`, not to `int`) and 5,000 digits (past `int`'s limit) were 500s wherever a query
parameter, path segment or manifest field was checked with `isdigit` and then converted. Each
is refused with a 4xx, or ignored where it was already (a list's paging), and the node
serves on (dayfly/numbers.py)."""

from __future__ import annotations

import httpx
import pytest
from conftest import make_zip

SUP2 = "%C2%B2"  # '²' in a URL
HUGE = "9" * 5000

FUNCTION = "numbers"


@pytest.fixture(scope="module")
def fn(server) -> str:
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{FUNCTION}/deploy",
                      content=make_zip({"handler.py": "def handler(e, c):\n    return 1\n"}),
                      headers={"content-type": "application/zip"}, timeout=120) as r:
        assert r.status_code == 200
        list(r.iter_lines())
    return FUNCTION


@pytest.mark.parametrize("bad", [SUP2, HUGE, "-1", "1.5", "%EF%BC%91"])  # ... and a fullwidth 1
@pytest.mark.parametrize("method,path", [
    ("POST", "/2015-03-31/functions/{fn}/invocations?Qualifier={n}"),
    ("GET", "/2015-03-31/functions/{fn}?Qualifier={n}"),
    ("GET", "/2015-03-31/functions/{fn}/configuration?Qualifier={n}"),
    ("GET", "/2015-03-31/functions/?Marker={n}&MaxItems={n}"),
    ("GET", "/2015-03-31/functions/{fn}/versions?Marker={n}&MaxItems={n}"),
    ("GET", "/2018-10-31/layers?Marker={n}&MaxItems={n}"),
    ("GET", "/2018-10-31/layers/nolayer/versions/{n}"),
    ("GET", "/2021-10-31/functions/{fn}/urls?Marker={n}&MaxItems={n}"),
    ("GET", "/2015-03-31/event-source-mappings?Marker={n}&MaxItems={n}"),
    ("GET", "/dayfly/v1/functions/{fn}/invocations?limit={n}"),
    ("GET", "/dayfly/v1/functions/{fn}/dlq?limit={n}"),
    ("GET", "/dayfly/v1/functions/{fn}/stats?window={n}"),
    ("GET", "/dayfly/v1/buckets/nobucket/objects?limit={n}"),
    ("GET", "/2019-09-25/functions/{fn}/event-invoke-config?Qualifier={n}"),
    ("GET", "/2019-09-25/functions/{fn}/provisioned-concurrency?Qualifier={n}"),
])
def test_a_number_no_int_reads_is_never_a_server_error(server, fn, method, path, bad):
    """A 4xx, or for a list's Marker/MaxItems the first page (they are ignored, as before)."""
    r = httpx.request(method, server.url + path.format(fn=fn, n=bad), content=b"{}",
                      timeout=30)
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.json().get("message") or r.json().get("Message"), r.text[:300]


def test_a_manifest_port_no_int_reads_is_refused_at_deploy(server):
    for port in ("²", HUGE, "٣"):  # superscript two, 5,000 digits, an Arabic-Indic three
        bundle = make_zip({"handler.py": "def handler(e, c):\n    return 1\n",
                           "dayfly.toml": f'network = ["db.internal:{port}"]\n'})
        with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/badport/deploy",
                          content=bundle, headers={"content-type": "application/zip"},
                          timeout=120) as r:
            body = r.read().decode()
        assert 400 <= r.status_code < 500 or '"error"' in body, (r.status_code, body[:300])
        assert "Internal" not in body and "internal error" not in body, body[:300]
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
