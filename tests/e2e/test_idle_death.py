"""An instance that ends while idle is never handed the next invocation (sandbox/safe.py,
guarantee 2), and one handed it before the host heard of the end runs it on another instance
(the function never started): an idle instance killed from outside (kill -9 of its pid, as the
OOM killer does), and a custom runtime whose bootstrap exits after answering (its instance ends
with it), over boto3 against a real server, in the process and linux tiers."""

from __future__ import annotations

import base64
import json
import os
import signal

import httpx
import pytest
from conftest import ALLOW_WEAK
from e2e_helpers import create, invoke, unique_name, wait_for
from test_lifecycle import running
from test_runtime_api import create as create_provided

SERVER_ARGS = ALLOW_WEAK
TIERS = ("process", "linux")

HANDLER = """
def handler(event, context):
    return {"id": context.aws_request_id}
"""

# answers one invocation, then exits: its instance ends while idle (runtime/runtime_api.py)
ONE_SHOT_BOOTSTRAP = r"""#!/bin/bash
api=${AWS_LAMBDA_RUNTIME_API}
base=/2018-06-01/runtime
exec 3<>"/dev/tcp/${api%:*}/${api#*:}"
printf 'GET %s/invocation/next HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n' "$base" >&3
rid=""
while IFS= read -r line <&3; do
  line=${line%$'\r'}
  [ -z "$line" ] && break
  case ${line,,} in lambda-runtime-aws-request-id:*) rid=${line#*: } ;; esac
done
exec 3<&-
echo "one shot: $rid"
body="{\"id\":\"$rid\"}"
exec 3<>"/dev/tcp/${api%:*}/${api#*:}"
printf 'POST %s/invocation/%s/response HTTP/1.1\r\nHost: api\r\nConnection: close\r\n' \
  "$base" "$rid" >&3
printf 'Content-Length: %d\r\n\r\n%s' "${#body}" "$body" >&3
IFS=' ' read -r _ status _ <&3
exit 0
"""


def instances(server, name: str) -> list[dict]:
    r = httpx.get(f"{server.url}/dayfly/v1/functions/{name}/instances", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["instances"]


@pytest.mark.parametrize("tier", TIERS)
def test_an_idle_instance_killed_from_outside_is_not_handed_the_next_invocation(server, lam,
                                                                                tier):
    name = unique_name(f"killed-{tier}")
    create(lam, name, {"handler.py": HANDLER, "dayfly.toml": f'isolation = "{tier}"\n'})
    for _ in range(3):
        r, out = invoke(lam, name)
        assert "FunctionError" not in r, out
        [inst] = instances(server, name)
        assert inst["state"] == "idle"
        # the linux tier freezes idle instances: a frozen one dies only once thawed, that is
        # when it is handed the next invocation, which it then never reads
        os.kill(inst["pid"], signal.SIGKILL)
        r, out = invoke(lam, name)
        assert "FunctionError" not in r, out  # before: Runtime.ExitError, signal: killed
        assert out["id"] == r["ResponseMetadata"]["RequestId"]
        assert wait_for(lambda pid=inst["pid"]: not running(pid))
        assert inst["id"] not in {i["id"] for i in instances(server, name)}


@pytest.mark.parametrize("tier", TIERS)
def test_a_bootstrap_that_exits_after_answering_does_not_fail_the_next_invocation(server, lam,
                                                                                  tier):
    name = unique_name(f"oneshot-{tier}")
    create_provided(lam, name, {"bootstrap": ONE_SHOT_BOOTSTRAP}, tier)
    for _ in range(5):  # back to back: the next one often reaches the instance before its end
        r = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        out = json.loads(r["Payload"].read())
        assert "FunctionError" not in r, out
        assert out["id"] == r["ResponseMetadata"]["RequestId"]
        logs = base64.b64decode(r["LogResult"]).decode()
        assert "Init Duration" in logs and f"one shot: {out['id']}" in logs  # a new instance
