"""Handler semantics through boto3: context, environment, init, errors, crashes, parallelism."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from e2e_helpers import create, invoke, unique_name

SHARED_SERVER = True  # the session's node (tests/conftest.py): names are unique, no node-wide asserts
ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"

CONTEXT = """
    def handler(event, context):
        return {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
"""

# Instances are told apart by a token drawn at import: pids repeat across instances when each
# one has its own pid namespace (the linux tier's instances are all pid 1).
PIDS = """
    import os, time

    INIT_PID = os.getpid()
    INSTANCE = os.urandom(8).hex()
    CALLS = 0

    def handler(event, context):
        global CALLS
        CALLS += 1
        time.sleep(event.get("sleep", 0))
        return {"init_pid": INIT_PID, "pid": os.getpid(), "calls": CALLS, "instance": INSTANCE}
"""

# one bundle that fails in every way the tests below ask for; each test deploys its own copy
MISBEHAVES = """
    import os, time

    INSTANCE = os.urandom(8).hex()

    def handler(event, context):
        what = event.get("do")
        if what == "exit":
            os._exit(1)
        if what == "segfault":
            import ctypes
            ctypes.string_at(0)
        if what == "sleep":
            time.sleep(event["seconds"])
        if what == "unserializable":
            return {"when": object()}
        return {"instance": INSTANCE}
"""


def request_id(resp: dict) -> str:
    return resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_context_fields_unqualified(lam):
    name = unique_name("ctx")
    create(lam, name, {"handler.py": CONTEXT}, MemorySize=384, Timeout=5)
    resp, ctx = invoke(lam, name)
    assert ctx["aws_request_id"] == request_id(resp)
    assert re.fullmatch(r"[0-9a-f-]{36}", ctx["aws_request_id"])
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"] == ARN_PREFIX + name
    assert ctx["memory_limit_in_mb"] == "384"
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]+", ctx["log_stream_name"])
    assert 0 < ctx["remaining_ms"] <= 5000
    # a second call gets a new request id, reported the same way
    resp2, ctx2 = invoke(lam, name)
    assert ctx2["aws_request_id"] == request_id(resp2) != ctx["aws_request_id"]


def test_context_fields_qualified(lam):
    name = unique_name("ctxq")
    create(lam, name, {"handler.py": CONTEXT}, Timeout=2)
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")

    _, by_alias = invoke(lam, name, Qualifier="prod")
    assert by_alias["invoked_function_arn"] == f"{ARN_PREFIX}{name}:prod"
    assert by_alias["function_version"] == "1"
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}/\[1\][0-9a-f]+", by_alias["log_stream_name"])
    assert 0 < by_alias["remaining_ms"] <= 2000

    _, by_version = invoke(lam, f"{name}:1")
    assert by_version["invoked_function_arn"] == f"{ARN_PREFIX}{name}:1"
    assert by_version["function_version"] == "1"


def test_lambda_environment_variables(lam):
    name = unique_name("envvars")
    create(lam, name, {"handler.py": """
        import os

        KEYS = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION", "_HANDLER", "LAMBDA_TASK_ROOT",
                "MY_VAR")

        def handler(event, context):
            out = {k: os.environ.get(k) for k in KEYS}
            out["cwd"] = os.getcwd()
            out["root_has_handler"] = os.path.isfile(
                os.path.join(os.environ["LAMBDA_TASK_ROOT"], "handler.py"))
            return out
    """}, MemorySize=512, Environment={"Variables": {"MY_VAR": "mine"}})
    _, env = invoke(lam, name)
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "handler.handler"
    assert env["MY_VAR"] == "mine"
    assert env["root_has_handler"] is True
    assert env["LAMBDA_TASK_ROOT"] == env["cwd"]


def test_module_init_runs_once_per_instance(lam):
    name = unique_name("init")
    create(lam, name, {"handler.py": PIDS})
    results = [invoke(lam, name)[1] for _ in range(4)]
    assert [r["calls"] for r in results] == [1, 2, 3, 4]
    assert {r["instance"] for r in results} == {results[0]["instance"]}
    assert {r["pid"] for r in results} == {results[0]["pid"]}
    assert all(r["init_pid"] == r["pid"] for r in results)


def test_async_handler(lam):
    name = unique_name("async")
    create(lam, name, {"handler.py": """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0.01)
            results = await asyncio.gather(*(double(x) for x in event["xs"]))
            return {"doubled": results, "rid": context.aws_request_id}

        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
    """})
    for xs in ([1, 2, 3], [10]):  # the second call reuses the instance's event loop
        resp, body = invoke(lam, name, {"xs": xs})
        assert "FunctionError" not in resp
        assert body == {"doubled": [2 * x for x in xs], "rid": request_id(resp)}


def test_handler_exception_is_an_unhandled_function_error(lam):
    name = unique_name("raises")
    create(lam, name, {"handler.py": """
        def helper(x):
            raise ValueError(f"bad value {x}")

        def handler(event, context):
            return helper(event["x"])
    """})
    resp, err = invoke(lam, name, {"x": 5}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "ValueError"
    assert err["errorMessage"] == "bad value 5"
    trace = "".join(err["stackTrace"])
    assert re.search(r'handler\.py", line 6, in handler', trace), trace
    assert re.search(r'handler\.py", line 3, in helper', trace), trace
    assert "dayfly/runtime" not in trace
    # the instance survives a handled exception
    _, again = invoke(lam, name, {"x": 6})
    assert again["errorMessage"] == "bad value 6"


def test_timeout_kills_the_instance_and_the_next_call_works(lam):
    name = unique_name("timeout")
    create(lam, name, {"handler.py": MISBEHAVES}, Timeout=1)
    _, first = invoke(lam, name)
    resp, err = invoke(lam, name, {"do": "sleep", "seconds": 3})
    assert resp["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in err["errorMessage"]
    _, after = invoke(lam, name)
    assert after["instance"] != first["instance"], "a timed-out instance must not be reused"


def test_unserializable_result_is_a_marshal_error(lam):
    name = unique_name("marshal")
    create(lam, name, {"handler.py": MISBEHAVES})
    resp, err = invoke(lam, name, {"do": "unserializable"})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.MarshalError"
    assert "Unable to marshal response" in err["errorMessage"]


def test_exit_is_an_exit_error_and_the_pool_heals(lam):
    name = unique_name("exit")
    create(lam, name, {"handler.py": MISBEHAVES})
    _, first = invoke(lam, name)
    resp, err = invoke(lam, name, {"do": "exit"})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError"
    assert "exit status 1" in err["errorMessage"]
    resp, after = invoke(lam, name)
    assert "FunctionError" not in resp
    assert after["instance"] != first["instance"]


def test_segfault_is_an_exit_error_and_the_pool_heals(lam):
    name = unique_name("segv")
    create(lam, name, {"handler.py": MISBEHAVES})
    _, first = invoke(lam, name)
    resp, err = invoke(lam, name, {"do": "segfault"})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "Runtime.ExitError"
    assert "signal: segmentation fault" in err["errorMessage"]
    resp, after = invoke(lam, name)
    assert "FunctionError" not in resp
    assert after["instance"] != first["instance"]


def test_parallel_invocations_all_succeed(lam):
    name = unique_name("parallel")
    create(lam, name, {"handler.py": """
        import os, time

        INSTANCE = os.urandom(8).hex()

        def handler(event, context):
            time.sleep(0.3)
            return {"i": event["i"], "instance": INSTANCE, "rid": context.aws_request_id}
    """})

    def call(i: int) -> tuple[dict, dict]:
        return invoke(lam, name, {"i": i})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    assert [body["i"] for _, body in results] == list(range(8))
    assert all(resp["StatusCode"] == 200 and "FunctionError" not in resp for resp, _ in results)
    assert all(body["rid"] == request_id(resp) for resp, body in results)
    assert len({body["rid"] for _, body in results}) == 8
    # 8 calls of 0.3 s each finishing together needed more than one instance
    assert len({body["instance"] for _, body in results}) > 1
