"""The Lambda management and invoke API through boto3 against a real `dayfly up`."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import ALLOW_WEAK, make_zip
from e2e_helpers import ROLE, create, invoke, unique_name, wait_for

SERVER_ARGS = ALLOW_WEAK  # the Event invoke test's function writes a host file: process tier

ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"

RETURNS = """
    def handler(event, context):
        return {{"value": {value!r}, "event": event}}
"""

ENV_AND_CONTEXT = """
    import os

    def handler(event, context):
        return {"env": os.environ.get(event["var"]), "mem": context.memory_limit_in_mb,
                "mem_env": os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]}
"""


def returns(value: str) -> dict[str, str]:
    """A bundle whose handler returns {"value": value, "event": event}."""
    return {"handler.py": RETURNS.format(value=value)}


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return (exc.value.response["Error"]["Code"],
            exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_create_function_returns_lambda_configuration(lam):
    name = unique_name("create")
    zip_bytes = make_zip(returns("one"))
    out = lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="handler.handler",
        Code={"ZipFile": zip_bytes}, MemorySize=256, Timeout=7, Description="made by e2e",
        Environment={"Variables": {"COLOUR": "blue", "SIZE": "3"}})
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert out["FunctionName"] == name
    assert out["FunctionArn"] == ARN_PREFIX + name
    assert out["CodeSha256"] == base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()
    assert out["CodeSize"] == len(zip_bytes)
    assert out["State"] == "Active"
    assert out["LastUpdateStatus"] == "Successful"
    assert out["Runtime"] == "python3.12"
    assert out["Handler"] == "handler.handler"
    assert out["Role"] == ROLE
    assert out["MemorySize"] == 256
    assert out["Timeout"] == 7
    assert out["Description"] == "made by e2e"
    assert out["Version"] == "$LATEST"
    assert out["Environment"] == {"Variables": {"COLOUR": "blue", "SIZE": "3"}}
    # the same configuration comes back from GetFunctionConfiguration
    again = lam.get_function_configuration(FunctionName=name)
    for key in ("FunctionArn", "CodeSha256", "MemorySize", "Timeout", "Environment", "Runtime",
                "Handler", "RevisionId"):
        assert again[key] == out[key], key


def test_create_existing_function_conflicts(lam):
    name = unique_name("dup")
    create(lam, name, returns("a"))
    with pytest.raises(ClientError) as exc:
        create(lam, name, returns("b"))
    assert error_of(exc) == ("ResourceConflictException", 409)


def test_get_function_code_location_serves_the_exact_zip(lam):
    name = unique_name("getfn")
    zip_bytes = make_zip(returns("code"))
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                        Handler="handler.handler", Code={"ZipFile": zip_bytes}, MemorySize=192)
    out = lam.get_function(FunctionName=name)
    assert out["Configuration"]["FunctionName"] == name
    assert out["Configuration"]["MemorySize"] == 192
    assert out["Configuration"]["State"] == "Active"
    assert out["Code"]["RepositoryType"] == "S3"
    download = httpx.get(out["Code"]["Location"], timeout=10)
    assert download.status_code == 200
    assert download.content == zip_bytes


def test_list_functions_paginates_with_max_items_and_marker(lam):
    names = {unique_name("page") for _ in range(3)}
    for n in names:
        create(lam, n, returns(n))
    seen: list[str] = []
    pages = 0
    marker = None
    while True:
        kw = {"MaxItems": 2} | ({"Marker": marker} if marker else {})
        page = lam.list_functions(**kw)
        pages += 1
        assert len(page["Functions"]) <= 2
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert len(seen) == len(set(seen)), "a function was listed twice across pages"
    assert names <= set(seen)
    assert pages >= 2
    # boto3's own paginator walks the same markers
    via_paginator = [f["FunctionName"]
                     for p in lam.get_paginator("list_functions").paginate(
                         PaginationConfig={"PageSize": 2})
                     for f in p["Functions"]]
    assert sorted(via_paginator) == sorted(seen)


def test_update_function_code_serves_new_code_and_changes_sha(lam):
    name = unique_name("updcode")
    first = create(lam, name, returns("old"))
    assert invoke(lam, name)[1]["value"] == "old"
    new_zip = make_zip(returns("new"))
    out = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert out["CodeSha256"] == base64.b64encode(hashlib.sha256(new_zip).digest()).decode()
    assert out["CodeSha256"] != first["CodeSha256"]
    assert out["RevisionId"] != first["RevisionId"]
    assert invoke(lam, name)[1]["value"] == "new"


def test_update_function_configuration_reaches_the_handler(lam):
    name = unique_name("updconf")
    create(lam, name, {"handler.py": ENV_AND_CONTEXT}, Environment={"Variables": {"MODE": "a"}})
    before = invoke(lam, name, {"var": "MODE"})[1]
    assert before == {"env": "a", "mem": "128", "mem_env": "128"}
    out = lam.update_function_configuration(
        FunctionName=name, MemorySize=256, Environment={"Variables": {"MODE": "b", "EXTRA": "x"}})
    assert out["MemorySize"] == 256
    assert out["Environment"] == {"Variables": {"MODE": "b", "EXTRA": "x"}}
    after = invoke(lam, name, {"var": "MODE"})[1]
    assert after == {"env": "b", "mem": "256", "mem_env": "256"}
    assert invoke(lam, name, {"var": "EXTRA"})[1]["env"] == "x"


def test_delete_function_then_get_is_not_found(lam):
    name = unique_name("delete")
    create(lam, name, returns("gone"))
    out = lam.delete_function(FunctionName=name)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=name)
    assert error_of(exc) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        invoke(lam, name)
    assert error_of(exc) == ("ResourceNotFoundException", 404)
    assert name not in {f["FunctionName"] for f in lam.list_functions(MaxItems=1000)["Functions"]}


def test_invoke_request_response_round_trips_the_payload(lam):
    name = unique_name("rr")
    create(lam, name, returns("rr"))
    event = {"n": 42, "s": "héllo", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    resp, body = invoke(lam, name, event)
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in resp
    assert body == {"value": "rr", "event": event}


def test_invoke_log_type_tail_returns_the_log(lam):
    name = unique_name("tail")
    create(lam, name, {"handler.py": """
        def handler(event, context):
            print("printed-by-handler", event["x"])
            return "ok"
    """})
    resp, body = invoke(lam, name, {"x": 7}, LogType="Tail")
    assert body == "ok"
    log = base64.b64decode(resp["LogResult"]).decode()
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    lines = log.splitlines()
    assert lines[0] == f"START RequestId: {rid} Version: $LATEST"
    assert "printed-by-handler 7" in lines
    assert f"END RequestId: {rid}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {rid}\tDuration: ")
    assert "Memory Size: 128 MB" in lines[-1]


def records(server, name: str) -> list[dict]:
    """dayfly's invocation records of a function, newest first."""
    r = httpx.get(f"{server.url}/dayfly/v1/functions/{name}/invocations", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["invocations"]


def test_invoke_event_is_accepted_and_runs(lam, tmp_path: Path):
    name = unique_name("event")
    out_file = tmp_path / "events.log"
    # the process tier shares the host's filesystem, so the handler can write to our tmp dir
    create(lam, name, {"handler.py": """
        import json, os

        def handler(event, context):
            with open(os.environ["OUT_FILE"], "a") as f:
                f.write(json.dumps(event) + "\\n")
    """, "dayfly.toml": 'isolation = "process"\n'},
        Environment={"Variables": {"OUT_FILE": str(out_file)}})
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"id": "ev-1"}')
    assert resp["StatusCode"] == 202
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert resp["Payload"].read() == b""
    text = wait_for(lambda: out_file.exists() and out_file.read_text(), timeout=10)
    assert text == '{"id": "ev-1"}\n'


def test_invoke_event_runs_in_the_default_tier(server, lam):
    name = unique_name("eventrec")
    create(lam, name, {"handler.py": """
        def handler(event, context):
            print("event-token", event["token"])
    """})
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"token": "t-42"}')
    assert resp["StatusCode"] == 202
    rows = wait_for(lambda: records(server, name), timeout=10)
    assert len(rows) == 1
    assert (rows[0]["trigger"], rows[0]["status"]) == ("event", "success")
    assert "event-token t-42" in rows[0]["logs"]


def test_invoke_dry_run_is_204_and_runs_nothing(server, lam):
    name = unique_name("dryrun")
    create(lam, name, returns("dry"))
    resp = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204
    assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"] == "$LATEST"
    assert resp["Payload"].read() == b""
    # a real invocation afterwards is the only one on record
    real, _ = invoke(lam, name)
    rid = real["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    rows = wait_for(lambda: records(server, name), timeout=10)
    assert [r["request_id"] for r in rows] == [rid]


def test_publish_version_numbers_and_dedup(lam):
    name = unique_name("publish")
    create(lam, name, returns("v1"))
    v1 = lam.publish_version(FunctionName=name, Description="first")
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == f"{ARN_PREFIX}{name}:1"
    assert v1["Description"] == "first"
    again = lam.publish_version(FunctionName=name)
    assert again["Version"] == "1", "publishing unchanged code must return the same version"
    assert again["CodeSha256"] == v1["CodeSha256"]
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(returns("v2")))
    v2 = lam.publish_version(FunctionName=name)
    assert v2["Version"] == "2"
    assert v2["CodeSha256"] != v1["CodeSha256"]
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert [v["FunctionArn"] for v in versions] == [
        f"{ARN_PREFIX}{name}", f"{ARN_PREFIX}{name}:1", f"{ARN_PREFIX}{name}:2"]


def test_aliases_route_invocations_to_their_version(lam):
    name = unique_name("alias")
    create(lam, name, returns("one"))
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(returns("two")))
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(returns("latest")))

    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                             Description="production")
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert alias["AliasArn"] == f"{ARN_PREFIX}{name}:live"
    assert alias["FunctionVersion"] == "1"
    got = lam.get_alias(FunctionName=name, Name="live")
    assert (got["Name"], got["FunctionVersion"], got["Description"]) == ("live", "1", "production")

    resp, body = invoke(lam, f"{name}:live")
    assert (body["value"], resp["ExecutedVersion"]) == ("one", "1")
    resp, body = invoke(lam, name, Qualifier="live")
    assert (body["value"], resp["ExecutedVersion"]) == ("one", "1")
    resp, body = invoke(lam, name, Qualifier="1")
    assert (body["value"], resp["ExecutedVersion"]) == ("one", "1")
    resp, body = invoke(lam, name, Qualifier="2")
    assert (body["value"], resp["ExecutedVersion"]) == ("two", "2")
    resp, body = invoke(lam, name)
    assert (body["value"], resp["ExecutedVersion"]) == ("latest", "$LATEST")

    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert updated["FunctionVersion"] == "2"
    assert updated["RevisionId"] != alias["RevisionId"]
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    resp, body = invoke(lam, f"{name}:live")
    assert (body["value"], resp["ExecutedVersion"]) == ("two", "2")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["live"]

    out = lam.delete_alias(FunctionName=name, Name="live")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_alias(FunctionName=name, Name="live")
    assert error_of(exc) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        invoke(lam, f"{name}:live")
    assert error_of(exc) == ("ResourceNotFoundException", 404)


def test_function_concurrency_put_get_delete(lam):
    name = unique_name("conc")
    create(lam, name, returns("c"))
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    out = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    assert out["ReservedConcurrentExecutions"] == 3
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 3
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 3}
    assert invoke(lam, name)[1]["value"] == "c"
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)


def test_zero_reserved_concurrency_throttles(server, lam):
    name = unique_name("throttle")
    create(lam, name, returns("never"))
    assert invoke(lam, name)[1]["value"] == "never"  # served (and its spec known) before
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as exc:
        invoke(lam, name)
    assert error_of(exc) == ("TooManyRequestsException", 429)
    # raw HTTP: the 429 comes at once (no queueing for an instance that can never start)
    r = httpx.post(f"{server.url}/2015-03-31/functions/{name}/invocations", content=b"{}",
                   timeout=3)
    assert r.status_code == 429
    assert r.headers["x-amzn-errortype"] == "TooManyRequestsException"
    # lifting the limit serves again
    lam.delete_function_concurrency(FunctionName=name)
    assert invoke(lam, name)[1]["value"] == "never"


def test_weighted_alias_sends_calls_to_both_versions(lam):
    """Each call picks its version: a weighted alias is never answered from a cached lookup."""
    name = unique_name("weights")
    create(lam, name, returns("one"))
    lam.publish_version(FunctionName=name)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(returns("two")))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    seen = {invoke(lam, f"{name}:canary")[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}  # all 40 on one version: chance 2 x 0.5^40
    lam.update_alias(FunctionName=name, Name="canary", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {}})
    assert {invoke(lam, f"{name}:canary")[0]["ExecutedVersion"] for _ in range(5)} == {"2"}


def test_invoke_by_full_arn(lam):
    name = unique_name("byarn")
    create(lam, name, returns("arn"))
    resp, body = invoke(lam, ARN_PREFIX + name, {"k": 1})
    assert resp["StatusCode"] == 200
    assert body == {"value": "arn", "event": {"k": 1}}
