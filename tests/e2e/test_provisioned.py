"""Provisioned concurrency through boto3 (control/provisioned.py, gateway/provisioned_api.py):
a config on a version or an alias keeps that many instances initialized, with Lambda's status
fields; $LATEST, unknown qualifiers and counts over the limit are refused; deleting it lets
them go back to min_warm."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from conftest import make_zip
from e2e_helpers import ROLE, unique_name, wait_for

from dayfly.control.provisioned import Provisioning

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contract"))
from test_change_push import APPLIED_WITHIN_S, code, make_node, warm  # noqa: F401  (two PostgreSQL nodes)


@pytest.fixture
async def cluster_nodes(make_node):  # noqa: F811  (the fixture imported above)
    return await make_node(), await make_node()


HANDLER = "import os\ndef handler(event, context):\n    return os.getpid()\n"


def instances(server, name: str, version: str) -> list[dict]:
    out = httpx.get(f"{server.url}/dayfly/v1/functions/{name}/instances").json()["instances"]
    return [i for i in out if i["version"] == version and not i.get("draining")
            and i["state"] != "starting"]


@pytest.fixture(scope="module")
def fn(lam):
    name = unique_name("prov")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": make_zip({"handler.py": HANDLER})})
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def test_a_version_keeps_instances_initialized(server, lam, fn):
    assert instances(server, fn, "1") == []  # nothing runs before the config
    put = lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="1",
                                                 ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    ready = wait_for(lambda: (c := lam.get_provisioned_concurrency_config(
        FunctionName=fn, Qualifier="1"))["Status"] == "READY" and c, timeout=60)
    assert ready, lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="1")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2
    assert ready["LastModified"]
    warm = instances(server, fn, "1")
    assert len(warm) == 2, warm
    # an invocation of the version is served by one of them: no cold start
    resp = lam.invoke(FunctionName=fn, Qualifier="1", Payload=b"{}")
    assert "FunctionError" not in resp
    records = httpx.get(f"{server.url}/dayfly/v1/functions/{fn}/invocations").json()[
        "invocations"]
    assert records and records[0]["cold"] is False

    lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier="1")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="1")


def test_alias_and_list(server, lam, fn):
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="live",
                                           ProvisionedConcurrentExecutions=1)
    got = wait_for(lambda: (c := lam.get_provisioned_concurrency_config(
        FunctionName=fn, Qualifier="live"))["Status"] == "READY" and c, timeout=60)
    assert got and got["AllocatedProvisionedConcurrentExecutions"] == 1
    assert len(instances(server, fn, "1")) >= 1  # the alias's version
    listed = lam.list_provisioned_concurrency_configs(FunctionName=fn)[
        "ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]
    assert listed[0]["RequestedProvisionedConcurrentExecutions"] == 1
    lam.delete_alias(FunctionName=fn, Name="live")  # its config goes with it
    assert lam.list_provisioned_concurrency_configs(FunctionName=fn)[
        "ProvisionedConcurrencyConfigs"] == []


def test_refusals(lam, fn):
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="unpublished"):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="42",
                                               ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="exceeds"):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="1",
                                               ProvisionedConcurrentExecutions=65)
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier="1")


async def test_configs_reach_the_other_node(cluster_nodes):
    """Cluster mode: a config put through node A is in B's memory within 1 s and B's pool of
    that version keeps that many instances; a deletion through A lets them go on B."""
    a, b = cluster_nodes
    await a.functions.create({"FunctionName": "fn", "Handler": "app.handler",
                              "Code": code("v1")})
    await a.functions.publish("fn", {})
    await b.until(lambda: 1 in b.registry.functions.get("fn", None).versions
                  if "fn" in b.registry.functions else False)
    await Provisioning(a.functions).put("fn", "1", {"ProvisionedConcurrentExecutions": 2})
    took = await b.until(lambda: b.registry.get("fn").provisioned.get("1", (0,))[0] == 2
                         and len(warm(b, "fn")) == 2)
    assert took < APPLIED_WITHIN_S + 1  # the notice, then two stub instances started
    assert b.scheduler.current[("fn", "1")].spec.min_warm == 2
    assert Provisioning(b.functions).get("fn", "1")["Status"] == "READY"
    await Provisioning(a.functions).delete("fn", "1")
    await b.until(lambda: "1" not in b.registry.get("fn").provisioned)
    assert b.registry.spec("fn", "1").min_warm == 0
