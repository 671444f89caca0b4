"""Lambda layers through boto3 (control/layers.py, gateway/layers_api.py, sandbox/opt.py):
publish, list, get and delete layer versions; functions mount them read-only under /opt in
their order (a later layer's file wins), with /opt/python on sys.path after the function's own
dependencies; `Layers` on CreateFunction and UpdateFunctionConfiguration and `layers` in
dayfly.toml are honoured, and an unknown layer is a 400."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import botocore.exceptions
import httpx
import pytest
from conftest import ALLOW_WEAK, make_zip
from e2e_helpers import ROLE, unique_name
from test_deps import wheel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contract"))
from test_change_push import APPLIED_WITHIN_S, make_node  # noqa: F401  (two PostgreSQL nodes)

SERVER_ARGS = ALLOW_WEAK


@pytest.fixture
async def cluster_nodes(make_node):  # noqa: F811  (the fixture imported above)
    return await make_node(), await make_node()


HANDLER = """
import os, sys
import common, only_base

def handler(event, context):
    out = {"who": common.WHO, "base": only_base.HERE, "path": sys.path,
           "site": __import__("sitemod").WHERE}
    if os.path.isdir("/opt/dayfly"):  # the jailed tiers: /opt is the merge, read-only
        out["opt"] = sorted(os.listdir("/opt"))
        out["tool"] = open("/opt/bin/tool").read()
        try:
            open("/opt/python/new.py", "w")
            out["write"] = "allowed"
        except OSError as exc:
            out["write"] = exc.strerror
    return out
"""


def layer_zip(who: str, extra: dict | None = None) -> bytes:
    return make_zip({"python/common.py": f"WHO = {who!r}\n",
                     "python/lib/python3.11/site-packages/sitemod.py": f"WHERE = {who!r}\n",
                     "bin/tool": f"tool of {who}\n", **(extra or {})})


@pytest.fixture(scope="module")
def layers(lam):
    base = unique_name("base")
    over = unique_name("over")
    b1 = lam.publish_layer_version(LayerName=base, Description="the base",
                                   Content={"ZipFile": layer_zip("base", {
                                       "python/only_base.py": "HERE = True\n"})},
                                   CompatibleRuntimes=["python3.11", "python3.12"],
                                   LicenseInfo="MIT")
    o1 = lam.publish_layer_version(LayerName=over, Content={"ZipFile": layer_zip("over-1")})
    o2 = lam.publish_layer_version(LayerName=over, Content={"ZipFile": layer_zip("over-2")})
    return {"base": base, "over": over, "b1": b1, "o1": o1, "o2": o2}


def call(lam, name: str) -> dict:
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    body = resp["Payload"].read()
    assert "FunctionError" not in resp, body
    return json.loads(body)


def test_publish_list_get(lam, layers):
    b1, o1, o2 = layers["b1"], layers["o1"], layers["o2"]
    assert b1["Version"] == 1 and b1["LayerVersionArn"] == b1["LayerArn"] + ":1"
    assert b1["LayerArn"].startswith("arn:aws:lambda:us-east-1:") and ":layer:" in b1["LayerArn"]
    assert b1["Content"]["CodeSize"] > 0 and b1["Content"]["CodeSha256"]
    assert b1["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert b1["LicenseInfo"] == "MIT" and b1["Description"] == "the base"
    assert (o1["Version"], o2["Version"]) == (1, 2)
    listed = {x["LayerName"]: x for x in lam.list_layers()["Layers"]}
    assert listed[layers["over"]]["LatestMatchingVersion"]["Version"] == 2
    assert listed[layers["base"]]["LatestMatchingVersion"]["LayerVersionArn"] == \
        b1["LayerVersionArn"]
    only = lam.list_layers(CompatibleRuntime="python3.12")["Layers"]
    assert [x["LayerName"] for x in only] == [layers["base"]]
    versions = lam.list_layer_versions(LayerName=layers["over"])["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    got = lam.get_layer_version(LayerName=layers["base"], VersionNumber=1)
    assert got["Content"]["CodeSha256"] == b1["Content"]["CodeSha256"]
    by_layer_arn = lam.get_layer_version(LayerName=b1["LayerArn"], VersionNumber=1)
    assert by_layer_arn["LayerVersionArn"] == b1["LayerVersionArn"]
    assert httpx.get(got["Content"]["Location"]).status_code in (200, 401, 403)
    by_arn = lam.get_layer_version_by_arn(Arn=o2["LayerVersionArn"])
    assert by_arn["Version"] == 2
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName=layers["base"], VersionNumber=9)


@pytest.mark.parametrize("tier", ["linux", "gvisor", "process"])
def test_functions_see_layers_in_order(lam, layers, tier):
    name = unique_name(f"uses-{tier}")
    whl_name, whl = wheel("sitemod", "1.0", "WHERE = 'function'\n")
    fn = lam.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="handler.handler",
        Timeout=30, Layers=[layers["b1"]["LayerVersionArn"], layers["o1"]["LayerVersionArn"]],
        Code={"ZipFile": make_zip({"handler.py": HANDLER, "requirements.txt": f"./{whl_name}\n",
                                   whl_name: whl,
                                   "dayfly.toml": f'isolation = "{tier}"\n'})})
    assert fn["Layers"] == [
        {"Arn": layers["b1"]["LayerVersionArn"], "CodeSize": layers["b1"]["Content"]["CodeSize"]},
        {"Arn": layers["o1"]["LayerVersionArn"], "CodeSize": layers["o1"]["Content"]["CodeSize"]}]
    out = call(lam, name)
    assert out["who"] == "over-1" and out["base"] is True  # the later layer's file wins
    assert out["site"] == "function"  # the function's own dependencies come first
    path = out["path"]
    site = [i for i, p in enumerate(path) if p.endswith("/python/lib/python3.11/site-packages")]
    plain = [i for i, p in enumerate(path) if p.endswith("/python") and "opt" in p]
    sdk = [i for i, p in enumerate(path) if p == "/var/runtime" or "/sdk/boto3-" in p]
    assert site and plain and sdk and site[0] < plain[0] < sdk[0], path
    if tier != "process":
        assert "/opt/python/lib/python3.11/site-packages" in path and "/opt/python" in path
        assert out["opt"] == ["bin", "dayfly", "python"]
        assert out["tool"] == "tool of over-1\n"
        assert out["write"] in ("Read-only file system", "Permission denied")  # gVisor: ro, uid 1000

    lam.update_function_configuration(FunctionName=name, Layers=[
        layers["b1"]["LayerVersionArn"], layers["o2"]["LayerVersionArn"]])
    assert lam.get_function_configuration(FunctionName=name)["Layers"][1]["Arn"] == \
        layers["o2"]["LayerVersionArn"]
    assert call(lam, name)["who"] == "over-2"
    # the handler needs only_base: a configuration without the base layer fails its check
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="only_base"):
        lam.update_function_configuration(FunctionName=name,
                                          Layers=[layers["o2"]["LayerVersionArn"]])


def test_unknown_layers_are_a_400(lam, layers):
    missing = layers["o2"]["LayerArn"] + ":7"
    for bad in ([missing], ["not-an-arn"], [layers["o2"]["LayerArn"]]):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            lam.create_function(FunctionName=unique_name("bad"), Runtime="python3.11", Role=ROLE,
                                Handler="handler.handler", Layers=bad,
                                Code={"ZipFile": make_zip({"handler.py": HANDLER})})
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "does not exist" in str(err.value) or "not a layer version ARN" in str(err.value)
    name = unique_name("upd")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler",
                        Code={"ZipFile": make_zip({"handler.py": "def handler(e, c):\n"
                                                                 "    return 1\n"})})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not exist"):
        lam.update_function_configuration(FunctionName=name, Layers=[missing])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="not compatible"):
        lam.create_function(FunctionName=unique_name("rt"), Runtime="python3.13", Role=ROLE,
                            Handler="handler.handler", Layers=[layers["b1"]["LayerVersionArn"]],
                            Code={"ZipFile": make_zip({"handler.py": HANDLER})})


def test_manifest_layers_and_delete(server, lam, layers):
    name = unique_name("toml")
    toml = f'layers = ["{layers["base"]}:1", "{layers["over"]}:2"]\n'
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=make_zip({"handler.py": HANDLER, "dayfly.toml": toml}),
                      headers={"content-type": "application/zip"}, timeout=300) as r:
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert [x["Arn"] for x in lines[-1]["function"]["Layers"]] == [
        layers["b1"]["LayerVersionArn"], layers["o2"]["LayerVersionArn"]]
    assert call(lam, name)["who"] == "over-2"
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}-x/deploy",
                      content=make_zip({"handler.py": HANDLER,
                                        "dayfly.toml": 'layers = ["nosuchlayer:1"]\n'}),
                      headers={"content-type": "application/zip"}, timeout=300) as r:
        err = [json.loads(x) for x in r.iter_lines() if x.strip()][-1]["error"]
    assert err["status"] == 400 and "nosuchlayer:1 does not exist" in err["message"]

    lam.delete_layer_version(LayerName=layers["over"], VersionNumber=2)
    assert [v["Version"] for v in lam.list_layer_versions(
        LayerName=layers["over"])["LayerVersions"]] == [1]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName=layers["over"], VersionNumber=2)
    # a function keeps the layer versions it was given, as on Lambda, also on a new instance
    lam.update_function_configuration(FunctionName=name, MemorySize=256)
    assert call(lam, name)["who"] == "over-2"
    again = lam.publish_layer_version(LayerName=layers["over"],
                                      Content={"ZipFile": layer_zip("over-3")})
    assert again["Version"] == 3  # numbers are never reused


def test_cli(server, lam, tmp_path):
    folder = tmp_path / "layer"
    (folder / "python").mkdir(parents=True)
    (folder / "python" / "clilayer.py").write_text("OK = 1\n")
    name = unique_name("cli")

    def dayfly(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "layers", *args],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "DAYFLY_ENDPOINT": server.url})
        assert out.returncode == 0, out.stderr
        return out.stdout + out.stderr

    assert f'layers = ["{name}:1"]' in dayfly("publish", name, str(folder), "--runtime",
                                              "python3.11")
    assert name in [x["LayerName"] for x in json.loads(dayfly("ls", "--json"))["Layers"]]
    got = lam.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["CompatibleRuntimes"] == ["python3.11"]
    dayfly("rm", name, "1")
    assert lam.list_layer_versions(LayerName=name)["LayerVersions"] == []


async def test_layers_reach_the_other_node(cluster_nodes):
    """Cluster mode: a layer version published through node A is in B's memory within 1 s (its
    change notice), a function on B can use it, and a deletion through A reaches B."""
    a, b = cluster_nodes
    t0 = time.monotonic()
    layer = await a.functions.layers.publish("shared", make_zip({"python/x.py": "X = 1\n"}),
                                             {"Description": "d"})
    took = await b.until(lambda: 1 in b.functions.layers.versions.get("shared", {}))
    assert took < APPLIED_WITHIN_S and time.monotonic() - t0 < 5
    assert b.functions.layers.get("shared", 1).code_hex == layer.code_hex
    assert b.functions.layers.resolve(["shared:1"], "python3.11")[0]["hex"] == layer.code_hex
    await a.functions.layers.delete("shared", 1)
    await b.until(lambda: "shared" not in b.functions.layers.versions)
    again = await b.functions.layers.publish("shared", make_zip({"python/x.py": "X = 2\n"}), {})
    assert again.version == 2  # the number counts on in the database, whichever node publishes
