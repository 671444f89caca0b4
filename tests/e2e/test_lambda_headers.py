"""Every response header that boto3's Lambda model reads, checked against that model.

botocore parses a response's request id from `x-amzn-RequestId` and the members its service
model places in headers (`"location": "header"`) by their exact names; a header spelled
differently is silently dropped, so these tests ask botocore itself what it expects.
"""

from __future__ import annotations

import base64
import json

import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError
from e2e_helpers import create, unique_name

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts

FAILS = """
    def handler(event, context):
        print("about to fail")
        raise ValueError("no")
"""

MODEL = botocore.session.get_session().get_service_model("lambda")


def header_members(operation: str) -> dict[str, str]:
    """{member name: header name} of an operation's output, from botocore's model."""
    shape = MODEL.operation_model(operation).output_shape
    return {name: member.serialization["name"] for name, member in shape.members.items()
            if member.serialization.get("location") == "header"}


# Invoke's header members that dayfly does not send: durable functions are not supported
NOT_SERVED = {"Invoke": {"DurableExecutionArn"}}


def test_the_model_places_invoke_members_where_dayfly_sends_them():
    served = {k: v for k, v in header_members("Invoke").items() if k not in NOT_SERVED["Invoke"]}
    assert served == {"FunctionError": "X-Amz-Function-Error", "LogResult": "X-Amz-Log-Result",
                      "ExecutedVersion": "X-Amz-Executed-Version"}


def test_invoke_headers_are_parsed_by_boto3(lam):
    name = unique_name("headers")
    create(lam, name, {"handler.py": FAILS})
    out = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    for member in header_members("Invoke").keys() - NOT_SERVED["Invoke"]:
        assert out.get(member), (member, out)
    assert out["FunctionError"] == "Unhandled"
    assert out["ExecutedVersion"] == "$LATEST"
    assert "about to fail" in base64.b64decode(out["LogResult"]).decode()
    rid = out["ResponseMetadata"]["RequestId"]
    assert rid and json.loads(out["Payload"].read())["errorType"] == "ValueError"
    assert rid in base64.b64decode(out["LogResult"]).decode()  # the same invocation's id


@pytest.mark.parametrize("kind", ["Event", "DryRun"])
def test_every_invocation_type_carries_a_request_id(lam, kind):
    name = unique_name(f"rid-{kind}")
    create(lam, name, {"handler.py": FAILS})
    out = lam.invoke(FunctionName=name, Payload=b"{}", InvocationType=kind)
    assert out["ResponseMetadata"]["RequestId"], out["ResponseMetadata"]


def test_management_calls_and_errors_carry_a_request_id(lam, server):
    name = unique_name("mgmt")
    created = create(lam, name, {"handler.py": FAILS})
    listed = lam.list_functions()
    got = lam.get_function(FunctionName=name)
    ids = [r["ResponseMetadata"].get("RequestId") for r in (created, listed, got)]
    assert all(ids) and len(set(ids)) == 3, ids
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=unique_name("missing"))
    assert exc.value.response["ResponseMetadata"].get("RequestId")
    # and from any HTTP client (header names are case-insensitive; botocore lower-cases them)
    r = httpx.get(f"{server.url}/2015-03-31/functions/{name}")
    assert r.headers.get("x-amzn-requestid")
