"""Hostile zips, sent with boto3 and `dayfly deploy`'s API to a real server: each one a 400 that
names the entry and no path of the server's, nothing left on disk, the server unhurt."""

from __future__ import annotations

import json

import httpx
import pytest
from botocore.exceptions import ClientError
from e2e_helpers import ROLE, create, invoke, unique_name
from hostile_zips import CASES, HANDLER

# the specific reason for each case, after Lambda's "Could not unzip uploaded file..." (or alone)
REASONS = {
    "bad_crc": "'handler.py' fails its CRC-32 check",
    "dir_and_file": "holds 'd' both as a file and as a folder",
    "file_and_child": "holds 'd' both as a file and as a folder",
    "duplicate": "'handler.py' appears more than once",
    "duplicate_spelled_twice": "'pkg//a.py' appears more than once",
    "size_too_small": "'handler.py' fails its CRC-32 check",
    "size_too_large": "'handler.py' declares 10000000 bytes but holds",
    "compressed_size_past_the_end": "'handler.py' runs past the end of the zip",
    "overlapping": "overlap",
    "encrypted": "'handler.py' is encrypted",
    "unknown_method": "'handler.py' uses compression method 99",
    "truncated_stream": "'handler.py' fails its CRC-32 check",
    "garbage_stream": "'handler.py' cannot be decompressed",
    "long_name": "has a name longer than",
    "backslash_name": "uses '\\' as a folder separator",
    "control_char_name": "has a control character in its name",
    "fifo_entry": "'pipe' is not a file or a folder",
}


def no_host_path(server, message: str) -> None:
    for leak in (str(server.data_dir), "/tmp", "unzip-", "/code/", "Errno"):
        assert leak not in message, f"{leak!r} in {message!r}"


def leftovers(server) -> list[str]:
    """What an unpack may leave: staging folders in tmp/ (code/ is compared before/after)."""
    return sorted(p.name for p in (server.data_dir / "tmp").iterdir())


@pytest.fixture(scope="module")
def target(lam) -> str:
    name = unique_name("zip-target")
    create(lam, name, {"handler.py": HANDLER})
    return name


@pytest.mark.parametrize("case", sorted(CASES))
def test_create_function_refuses(server, lam, case):
    code_before = sorted((server.data_dir / "code").iterdir())
    name = unique_name(case)
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                            Handler="handler.handler", Code={"ZipFile": CASES[case]()})
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    assert err["Error"]["Code"] == "InvalidParameterValueException"
    message = err["Error"]["Message"]
    assert REASONS[case] in message, message
    no_host_path(server, message)
    with pytest.raises(ClientError) as missing:
        lam.get_function(FunctionName=name)
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert leftovers(server) == []
    assert sorted((server.data_dir / "code").iterdir()) == code_before


@pytest.mark.parametrize("case", sorted(CASES))
def test_update_function_code_refuses_and_keeps_serving(server, lam, target, case):
    code_before = sorted((server.data_dir / "code").iterdir())
    before = lam.get_function(FunctionName=target)["Configuration"]["CodeSha256"]
    with pytest.raises(ClientError) as exc:
        lam.update_function_code(FunctionName=target, ZipFile=CASES[case]())
    err = exc.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    assert REASONS[case] in err["Error"]["Message"]
    no_host_path(server, err["Error"]["Message"])
    assert lam.get_function(FunctionName=target)["Configuration"]["CodeSha256"] == before
    assert invoke(lam, target)[1] == {"ok": True}
    assert leftovers(server) == []
    assert sorted((server.data_dir / "code").iterdir()) == code_before


@pytest.mark.parametrize("case", sorted(CASES))
def test_dayfly_deploy_refuses(server, case):
    code_before = sorted((server.data_dir / "code").iterdir())
    name = unique_name(case)
    with httpx.stream("POST", f"{server.url}/dayfly/v1/functions/{name}/deploy",
                      content=CASES[case](), headers={"Content-Type": "application/zip"},
                      timeout=60) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert "error" in lines[-1], lines
    error = lines[-1]["error"]
    assert (error["status"], error["code"]) == (400, "InvalidParameterValueException"), error
    assert REASONS[case] in error["message"]
    no_host_path(server, error["message"])
    assert httpx.get(f"{server.url}/2015-03-31/functions/{name}", timeout=10).status_code == 404
    assert leftovers(server) == []
    assert sorted((server.data_dir / "code").iterdir()) == code_before


def test_server_is_still_healthy(server, lam, target):
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert invoke(lam, target)[1] == {"ok": True}
    assert "Traceback" not in server.log()
