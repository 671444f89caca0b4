"""Bad requests and bad code get one clear 4xx each, change nothing, and never hurt the server."""

from __future__ import annotations

import base64
import contextlib
import io
import stat
import threading
import zipfile

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import ALLOW_WEAK, make_zip
from e2e_helpers import ROLE, create, invoke, unique_name

SERVER_ARGS = ALLOW_WEAK  # one bad-input test deploys a process-tier function

GOOD = {"handler.py": """
    def handler(event, context):
        return {"ok": True, "event": event}
"""}

MAX_PAYLOAD = 6 * 1024 * 1024


def invoke_url(server, name: str) -> str:
    return f"{server.url}/2015-03-31/functions/{name}/invocations"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def create_fails(lam, files: dict[str, str | bytes] | None = None, *,
                 zip_bytes: bytes | None = None, **kw) -> tuple[str, int, str]:
    """CreateFunction that must fail; returns (code, status, message) and checks nothing exists."""
    name = unique_name("bad")
    code = zip_bytes if zip_bytes is not None else make_zip(files or {})
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                            Handler=kw.pop("Handler", "handler.handler"),
                            Code={"ZipFile": code}, **kw)
    with pytest.raises(ClientError) as missing:
        lam.get_function(FunctionName=name)
    assert error_of(missing)[:2] == ("ResourceNotFoundException", 404)
    return error_of(exc)


@pytest.fixture(scope="module")
def good(lam) -> str:
    """A working function the bad requests are aimed at."""
    name = unique_name("target")
    create(lam, name, GOOD)
    return name


# -- invoke ---------------------------------------------------------------------------------------


def test_malformed_json_payload_boto3(lam, good):
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=good, Payload=b'{"not": json')
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert "Could not parse request body into json" in message


def test_malformed_json_payload_raw(server, good):
    r = httpx.post(invoke_url(server, good), content=b"{oops", timeout=10)
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert r.json()["__type"] == "InvalidRequestContentException"


def test_unknown_invocation_type(server, good):
    r = httpx.post(invoke_url(server, good), content=b"{}",
                   headers={"X-Amz-Invocation-Type": "Sometimes"}, timeout=10)
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    assert "Sometimes" in r.json()["message"]


@pytest.mark.parametrize("target", ["missing-function", "{good}:nope", "{good}:99"])
def test_unknown_function_alias_or_version_boto3(lam, good, target):
    fn = target.format(good=good) if "{good}" in target else unique_name(target)
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn, Payload=b"{}")
    code, status, message = error_of(exc)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:" in message


def test_unknown_qualifier_raw(server, good):
    for qualifier in ("nope", "42"):
        r = httpx.post(invoke_url(server, good), params={"Qualifier": qualifier}, content=b"{}",
                       timeout=10)
        assert r.status_code == 404
        assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"
        assert r.json()["message"].endswith(f"function:{good}:{qualifier}")
    r = httpx.get(f"{server.url}/2015-03-31/functions/{unique_name('ghost')}", timeout=10)
    assert r.status_code == 404
    assert r.headers["x-amzn-errortype"] == "ResourceNotFoundException"


def test_payload_over_6_mib_is_413(server, lam, good):
    size = MAX_PAYLOAD + 1
    too_big = b'"' + b"a" * (size - 2) + b'"'
    assert len(too_big) == size
    r = httpx.post(invoke_url(server, good), content=too_big, timeout=30)
    assert r.status_code == 413
    assert r.headers["x-amzn-errortype"] == "RequestTooLargeException"
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=good, Payload=too_big)
    assert error_of(exc)[:2] == ("RequestTooLargeException", 413)


def test_payload_just_under_the_limit_is_served(lam):
    name = unique_name("bigok")
    create(lam, name, {"handler.py": """
        def handler(event, context):
            return len(event)
    """})
    payload = b'"' + b"a" * (MAX_PAYLOAD - 2) + b'"'
    resp = lam.invoke(FunctionName=name, Payload=payload)
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == str(MAX_PAYLOAD - 2).encode()


# -- bad code at CreateFunction ------------------------------------------------------------------


def test_zip_without_the_handler_module(lam):
    code, status, message = create_fails(lam, {"other.py": "def handler(e, c):\n    return 1\n"})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Unable to import module 'handler'" in message
    assert "No module named 'handler'" in message


def test_module_without_the_handler_function(lam):
    code, status, message = create_fails(lam, {"handler.py": "def main(e, c):\n    return 1\n"})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Handler 'handler' missing on module 'handler'" in message


def test_syntax_error_names_file_and_line(lam):
    code, status, message = create_fails(lam, {"handler.py": """\
        def handler(event, context):
            return 1
        def broken(:
            pass
    """})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Syntax error in module 'handler'" in message
    assert "handler.py, line 3" in message


def test_import_error_names_the_missing_module(lam):
    code, status, message = create_fails(lam, {"handler.py": """
        import no_such_module_for_e2e

        def handler(event, context):
            return 1
    """})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Unable to import module 'handler'" in message
    assert "No module named 'no_such_module_for_e2e'" in message


def test_exception_at_import_names_it(lam):
    code, status, message = create_fails(lam, {"handler.py": """
        CONFIG = {}
        TABLE = CONFIG["table"]

        def handler(event, context):
            return 1
    """})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "KeyError: 'table'" in message
    assert "handler.py" in message and "line 3" in message


def test_init_error_is_named_even_when_the_server_is_busy(server, lam):
    """A busy event loop widens the window between the fork and `expect()`, where an early
    INIT_ERROR (or READY) frame used to be dropped; none may be lost."""
    stop = threading.Event()

    def keep_busy() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"{server.url}/healthz")

    threads = [threading.Thread(target=keep_busy) for _ in range(4)]
    for t in threads:
        t.start()
    # the process tier starts fastest, so more attempts fit; the window is on the host side anyway
    code = make_zip({"handler.py": "raise KeyError('table')\n",
                     "dayfly.toml": 'isolation = "process"\n'})
    messages = []
    try:
        for _ in range(40):
            with pytest.raises(ClientError) as exc:
                lam.create_function(FunctionName=unique_name("busy"), Runtime="python3.11",
                                    Role=ROLE, Handler="handler.handler", Code={"ZipFile": code})
            messages.append(error_of(exc)[2])
            if "KeyError" not in messages[-1]:
                break
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all("KeyError: 'table'" in m for m in messages), messages[-1]


@pytest.mark.parametrize(("toml", "expected"), [
    ("bogus_key = 1\n", "unknown key(s) bogus_key"),
    ('memory = "lots"\n', "'memory' must be an integer from 128 to 10240, got 'lots'"),
    ("timeout = 0\n", "'timeout' must be a number from 1 to 900"),
    ('isolation = "vm"\n', "'isolation' must be one of"),
    ("[env]\nAWS_REGION = \"x\"\n", "AWS_REGION is reserved"),
    ("memory = \n", "dayfly.toml is not valid TOML"),
], ids=["unknown-key", "memory-type", "timeout-range", "isolation", "reserved-env", "syntax"])
def test_bad_dayfly_toml(lam, toml, expected):
    code, status, message = create_fails(lam, {**GOOD, "dayfly.toml": toml})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "dayfly.toml" in message
    assert expected in message


def test_corrupt_zip(lam):
    code, status, message = create_fails(lam, zip_bytes=b"PK\x03\x04 this is not a zip at all")
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Could not unzip uploaded file" in message


def test_zip_slip_entry_is_refused(server, lam):
    code, status, message = create_fails(lam, {**GOOD, "../evil.py": "print('escaped')\n"})
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "'../evil.py' points outside the bundle" in message
    escaped = [p for p in server.data_dir.parent.rglob("evil.py")]
    assert escaped == []


def test_absolute_and_symlink_entries_are_refused(lam):
    code, status, message = create_fails(lam, {**GOOD, "/etc/evil.py": "x = 1\n"})
    assert (code, status, "points outside the bundle" in message) == (
        "InvalidParameterValueException", 400, True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(e, c):\n    return 1\n")
        link = zipfile.ZipInfo("passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    code, status, message = create_fails(lam, zip_bytes=buf.getvalue())
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "'passwd' is a symbolic link" in message


def test_bad_parameters_raw(server):
    """Values boto3 would refuse client-side, sent as a hand-written request."""
    zip_b64 = base64.b64encode(make_zip(GOOD)).decode()
    url = f"{server.url}/2015-03-31/functions"
    base = {"FunctionName": unique_name("raw"), "Runtime": "python3.11", "Role": ROLE,
            "Handler": "handler.handler", "Code": {"ZipFile": zip_b64}}
    cases = [
        ({**base, "MemorySize": 64}, "memorySize"),
        ({**base, "Timeout": 0}, "timeout"),
        ({**base, "Runtime": "nodejs20.x"}, "runtime"),
        ({**base, "Handler": "no-dot"}, "Handler"),
        ({**base, "FunctionName": "has space"}, "FunctionName"),
        ({**base, "Code": {"ZipFile": "%%% not base64 %%%"}}, "base64"),
        ({**base, "Code": {"S3Bucket": "b", "S3Key": "k"}}, "Code.ZipFile is required"),
    ]
    for body, needle in cases:
        r = httpx.post(url, json=body, timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["x-amzn-errortype"] == "InvalidParameterValueException"
        assert needle in r.json()["message"], (needle, r.json())
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"},
                   timeout=10)
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "InvalidRequestContentException"
    assert httpx.get(f"{url}/{base['FunctionName']}", timeout=10).status_code == 404


# -- bad code at UpdateFunctionCode ---------------------------------------------------------------


def test_failed_update_keeps_the_previous_code_serving(lam):
    name = unique_name("keep")
    create(lam, name, {"handler.py": "def handler(e, c):\n    return 'old'\n"})
    before = lam.get_function_configuration(FunctionName=name)
    assert invoke(lam, name)[1] == "old"
    for bad in ({"handler.py": "def handler(e, c)\n    return 'new'\n"},
                {"handler.py": "import not_installed_e2e\n"},
                {"handler.py": "def handler(e, c):\n    return 'new'\n", "dayfly.toml": "x = 1\n"}):
        with pytest.raises(ClientError) as exc:
            lam.update_function_code(FunctionName=name, ZipFile=make_zip(bad))
        assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)
        assert invoke(lam, name)[1] == "old"
    with pytest.raises(ClientError) as exc:
        lam.update_function_code(FunctionName=name, ZipFile=b"not a zip")
    assert error_of(exc)[:2] == ("InvalidParameterValueException", 400)
    after = lam.get_function_configuration(FunctionName=name)
    assert (after["CodeSha256"], after["RevisionId"]) == (before["CodeSha256"],
                                                           before["RevisionId"])
    assert invoke(lam, name)[1] == "old"


# -- and after all of that ------------------------------------------------------------------------


def test_server_is_still_healthy(server, lam, good):
    r = httpx.get(f"{server.url}/healthz", timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    resp, body = invoke(lam, good, {"after": "everything"})
    assert resp["StatusCode"] == 200
    assert body == {"ok": True, "event": {"after": "everything"}}
    assert server.proc.poll() is None
