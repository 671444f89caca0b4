"""The cluster in /metrics, the stats API, the CLI and the dashboard, on two real
`dayfly up --cluster` nodes: node 0 lists both nodes and the warm instances node 1 holds, and
the record of an invoke node 1 ran says node 1, read through node 0."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from browser_helpers import chromium, page_errors
from click.testing import CliRunner
from cluster_helpers import Cluster, running_cluster
from conftest import ALLOW_WEAK, make_zip
from prometheus_client.parser import text_string_to_metric_families

from dayfly.cli.main import cli

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("obs"), 2, *ALLOW_WEAK,
                         "--isolation", "process") as c:
        wait_until(lambda: c.live(0) == c.live(1) == ["node0", "node1"], "both nodes live")
        yield c


def wait_until(check, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)
    return value


@pytest.fixture(scope="module")
def ran_on_1(cluster) -> str:
    """`seen` deployed through node 0 and invoked on node 1 (which has room: it runs it);
    the request id."""
    lam = cluster.node(0).lambda_client()
    lam.create_function(FunctionName="seen", Runtime="python3.11", Handler="handler.handler",
                        Role="arn:aws:iam::000000000000:role/x",
                        Code={"ZipFile": make_zip({"handler.py": HANDLER})})
    url = f"{cluster.node(1).url}/2015-03-31/functions/seen/invocations"

    def invoked() -> httpx.Response | None:
        r = httpx.post(url, json={}, timeout=60)
        return r if r.status_code == 200 else None  # 404 until node 1 heard of the deploy
    return wait_until(invoked, "node 1 runs seen").headers["x-amzn-requestid"]


def samples(url: str, family: str) -> list[tuple[dict[str, str], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return [(s.labels, s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if f.name == family]


def test_metrics_on_node_0_list_both_nodes_and_node_1s_warm_instances(cluster, ran_on_1):
    url = cluster.node(0).url
    nodes = {labels["node"]: labels for labels, _ in samples(url, "dayfly_node_info")}
    assert sorted(nodes) == ["node0", "node1"]
    assert nodes["node0"]["self"] == "true" and nodes["node1"]["self"] == "false"
    assert nodes["node1"]["address"] == cluster.node(1).url
    assert samples(url, "dayfly_cluster_nodes") == [({"cluster": cluster.name}, 2.0)]

    def warm_on_1() -> float:  # node 1's next heartbeat (every second) carries its idle instance
        return sum(v for labels, v in samples(url, "dayfly_node_warm_instances")
                   if labels == {"node": "node1", "function": "seen"})
    assert wait_until(warm_on_1, "node 1's warm instance of seen in node 0's /metrics") >= 1
    assert not [1 for labels, _ in samples(url, "dayfly_node_warm_instances")
                if labels["node"] == "node0"]  # node 0 never ran it
    ages = dict((labels["node"], v) for labels, v in
                samples(url, "dayfly_node_heartbeat_age_seconds"))
    assert ages["node0"] == 0 and 0 <= ages["node1"] < 5
    streams = {labels["stream"]: v for labels, v in samples(url, "dayfly_queue_stream_messages")}
    assert streams == {"events": 0, "dlq": 0}


def test_the_stats_api_shows_the_cluster(cluster, ran_on_1):
    def seen_warm() -> dict | None:
        c = httpx.get(f"{cluster.node(0).url}/dayfly/v1/stats", timeout=10).json()
        c = c["platform"]["cluster"]
        by_id = {n["id"]: n for n in c["nodes"]}
        return c if by_id.get("node1", {}).get("warm", {}).get("seen") else None
    c = wait_until(seen_warm, "node 1's warm instance in node 0's stats")
    assert c["name"] == cluster.name and [n["id"] for n in c["nodes"]] == ["node0", "node1"]
    assert c["nodes"][0]["self"] and c["nodes"][1]["address"] == cluster.node(1).url
    assert c["streams"] == {"events": 0, "dlq": 0} and c["forwarded"] == {}


def test_the_record_of_an_invoke_run_on_node_1_says_node_1(cluster, ran_on_1):
    rec = httpx.get(f"{cluster.node(0).url}/dayfly/v1/invocations/{ran_on_1}", timeout=10)
    assert rec.status_code == 200 and rec.json()["node"] == "node1"
    env = {"DAYFLY_ENDPOINT": cluster.node(0).url, "DAYFLY_TOKEN": "",
           "DAYFLY_DATA_DIR": "/nonexistent", "COLUMNS": "250"}
    res = CliRunner().invoke(cli, ["invocations", "seen"], env=env, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    header, row = (next(line for line in res.output.splitlines() if key in line)
                   for key in ("NODE", ran_on_1))
    assert row.split()[-1] == "node1" and header.split()[-1] == "NODE"
    res = CliRunner().invoke(cli, ["logs", "seen"], env=env, catch_exceptions=False)
    assert f"[node node1]\nSTART RequestId: {ran_on_1}" in res.output
    res = CliRunner().invoke(cli, ["logs", "seen", "--json"], env=env, catch_exceptions=False)
    assert [json.loads(line)["node"] for line in res.output.splitlines()] == ["node1"]


def test_the_dashboard_shows_the_nodes_and_the_node_of_a_record(cluster, ran_on_1):
    url = cluster.node(0).url
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = page_errors(page)
        page.goto(f"{url}/")
        node1 = page.locator('tr[data-node="node1"]')
        node1.wait_for(timeout=10_000)
        assert cluster.node(1).url in node1.inner_text()
        # the overview refreshes every 5 s: node 1's warm instance shows within one or two
        page.locator('tr[data-node="node1"]', has_text="seen: 1").wait_for(timeout=15_000)
        assert "this node" in page.locator('tr[data-node="node0"]').inner_text()
        assert f"Nodes of cluster {cluster.name}" in page.inner_text("main")
        page.goto(f"{url}/ui/#/fn/seen/invocations")
        row = page.locator(f'tr[data-request-id="{ran_on_1}"]')
        row.wait_for(timeout=10_000)
        assert row.inner_text().split()[-1] == "node1"
        row.click()
        assert "node1" in page.locator("section.detail").inner_text()
        assert not errors, errors


def test_a_single_node_shows_itself(server):
    """No cluster: the same views list the one node (no PostgreSQL or NATS involved)."""
    nodes = samples(server.url, "dayfly_node_info")
    assert len(nodes) == 1 and nodes[0][0]["self"] == "true"
    assert samples(server.url, "dayfly_cluster_nodes") == [({"cluster": ""}, 1.0)]
    c = httpx.get(f"{server.url}/dayfly/v1/stats", timeout=10).json()["platform"]["cluster"]
    assert c["name"] is None and [n["self"] for n in c["nodes"]] == [True]
    assert c["nodes"][0]["address"] == server.url
