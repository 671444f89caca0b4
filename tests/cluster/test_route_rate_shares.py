"""A route's rate limit holds across the cluster, not per node (scheduler/share.py,
gateway/routes.py): on two real cluster nodes a route with a burst of 4 (and a refill too slow to
matter here) admits 2 requests on each node, then answers 429, where each node used to admit all
4; once one node is killed (kill -9) the survivor's share is the whole burst again."""

from __future__ import annotations

import io
import textwrap
import zipfile
from pathlib import Path

import httpx
from cluster_helpers import running_cluster
from conftest import ALLOW_WEAK
from test_forward import share_nodes, wait_until

APP = """
def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""
TOML = """
handler = "app.handler"

[http]
auth = "none"
routes = ["GET /probe", { route = "GET /limited", rate_limit = { rps = 0.001, burst = 4 } }]
"""


def bundle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", APP)
        z.writestr("dayfly.toml", textwrap.dedent(TOML))
    return buf.getvalue()


def statuses(url: str, n: int) -> list[int]:
    return [httpx.get(f"{url}/limited", timeout=30).status_code for _ in range(n)]


def test_two_nodes_each_admit_their_share_of_a_routes_rate(tmp_path: Path):
    with running_cluster(tmp_path, 2, *ALLOW_WEAK, "--isolation", "process") as c:
        a, b = c.node(0), c.node(1)
        wait_until(lambda: c.live(0) == c.live(1) == ["node0", "node1"], "both nodes live")
        a.lambda_client().create_function(
            FunctionName="limited", Runtime="python3.11", Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": bundle()})
        wait_until(lambda: share_nodes(a) == 2 == share_nodes(b), "two nodes share limits")
        for node in (a, b):  # the route is served on both (the deploy reached node1)
            wait_until(lambda n=node: httpx.get(f"{n.url}/probe", timeout=30).status_code == 200,
                       "the route is served")
        assert statuses(a.url, 3) == [200, 200, 429]  # before: 200 four times on each node
        assert statuses(b.url, 3) == [200, 200, 429]

        c.kill(1)
        wait_until(lambda: share_nodes(a) == 1, "the survivor holds the whole rate", 10)
        assert statuses(a.url, 5) == [200, 200, 200, 200, 429]  # a new bucket: the whole burst
