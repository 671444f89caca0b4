"""Concurrency shares follow membership (scheduler/share.py, cluster/forward.py): reserved
concurrency 2 on two real cluster nodes is one instance each; when one node is killed (kill -9),
the survivor's share becomes the whole limit and it runs two at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cluster_helpers import running_cluster
from conftest import ALLOW_WEAK
from test_forward import HANDLER, invoke, queued, record, share_nodes, wait_until, zipped


def test_the_survivor_of_two_nodes_takes_the_whole_limit(tmp_path: Path):
    with running_cluster(tmp_path, 2, *ALLOW_WEAK, "--isolation", "process") as c:
        a, b = c.node(0), c.node(1)
        wait_until(lambda: c.live(0) == c.live(1) == ["node0", "node1"], "both nodes live")
        lam = a.lambda_client()
        lam.create_function(FunctionName="gate", Runtime="python3.11",
                            Handler="handler.handler", Role="arn:aws:iam::000000000000:role/x",
                            Code={"ZipFile": zipped(HANDLER)}, Timeout=60)
        lam.put_function_concurrency(FunctionName="gate", ReservedConcurrentExecutions=2)
        wait_until(lambda: share_nodes(a) == 2 == share_nodes(b), "two nodes share the limit")
        c.kill(1)
        wait_until(lambda: share_nodes(a) == 1, "the survivor holds the whole limit", 10)

        # two invokes at once on the survivor, both running; a third waits in its queue
        gates = [tmp_path / f"go{i}" for i in range(3)]
        started = [tmp_path / f"started{i}" for i in range(3)]
        with ThreadPoolExecutor(3) as pool:
            try:
                runs = [pool.submit(invoke, a, {"started": str(started[i]),
                                                "gate": str(gates[i])}) for i in range(2)]
                for s in started[:2]:
                    wait_until(s.exists, f"{s.name} runs")
                third = pool.submit(invoke, a, {"started": str(started[2]),
                                                "gate": str(gates[2])})
                wait_until(lambda: queued(a) == 1, "the third waits: the limit is 2")
                assert not started[2].exists()
            finally:
                for g in gates:
                    g.touch()
            replies = [f.result() for f in (*runs, third)]
        assert [r.status_code for r in replies] == [200, 200, 200]
        for r in replies:
            assert record(a, r.headers["x-amzn-requestid"])["node"] == "node0"
