"""Layers and provisioned concurrency on two `dayfly up --cluster` nodes (issue 16 with issue
14's cluster): a layer published through node 0 is used by a function that node 1 runs (it
fetches the layer's bundle from the shared code store, as it does the function's code), and a
provisioned concurrency config put through node 0 keeps instances initialized on node 1."""

from __future__ import annotations

import json

import httpx
from cluster_helpers import poll, running_cluster
from conftest import make_zip

HANDLER = "import shared\ndef handler(event, context):\n    return shared.WHO\n"


def idle(server, name: str, version: str) -> list[dict]:
    out = httpx.get(f"{server.url}/dayfly/v1/functions/{name}/instances", timeout=10).json()
    return [i for i in out["instances"] if i["version"] == version and i["state"] == "idle"
            and not i.get("draining")]


def test_layers_and_provisioned_concurrency_across_nodes(tmp_path):
    with running_cluster(tmp_path, 2, "--allow-weak-isolation") as cluster:
        a, b = cluster.node(0), cluster.node(1)
        lam_a, lam_b = a.lambda_client(), b.lambda_client()
        layer = lam_a.publish_layer_version(
            LayerName="shared", Content={"ZipFile": make_zip({"python/shared.py": "WHO = 'layer'\n"})})
        assert poll(lambda: lam_b.list_layer_versions(LayerName="shared")["LayerVersions"], 5)
        lam_a.create_function(FunctionName="uses", Runtime="python3.11", Role="r",
                              Handler="handler.handler", Layers=[layer["LayerVersionArn"]],
                              Code={"ZipFile": make_zip({"handler.py": HANDLER})})
        version = lam_a.publish_version(FunctionName="uses")["Version"]
        lam_a.put_provisioned_concurrency_config(FunctionName="uses", Qualifier=version,
                                                 ProvisionedConcurrentExecutions=1)
        # node 1 never ran the deploy: it warms an instance with the code and the layer fetched
        assert poll(lambda: idle(b, "uses", version), 30), httpx.get(
            f"{b.url}/dayfly/v1/functions/uses/instances").text
        assert poll(lambda: lam_b.get_provisioned_concurrency_config(
            FunctionName="uses", Qualifier=version)["Status"] == "READY", 10)
        out = lam_b.invoke(FunctionName="uses", Qualifier=version, Payload=b"{}")
        assert json.loads(out["Payload"].read()) == "layer"
        lam_b.delete_provisioned_concurrency_config(FunctionName="uses", Qualifier=version)
        assert poll(lambda: not lam_a.list_provisioned_concurrency_configs(
            FunctionName="uses")["ProvisionedConcurrencyConfigs"], 5)
