"""Provisioned concurrency through boto3 (control/provisioned.py, gateway/provisioned_api.py):
a config on a version or an alias keeps that many instances initialized, with Lambda's status
fields; $LATEST, unknown qualifiers and counts over the limit are refused; deleting it lets
them go back to min_warm."""

from __future__ import annotations

import httpx
import pytest
from conftest import make_zip
from e2e_helpers import ROLE, unique_name, wait_for

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
