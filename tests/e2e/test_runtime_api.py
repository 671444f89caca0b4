"""The Lambda Runtime API and custom runtimes, end to end over boto3, in every tier.

A `provided` function's instance serves the Runtime API itself on its own loopback and relays to
the host over its channel (runtime/runtime_api.py). Three runtimes drive it: a bash script (HTTP
over bash's /dev/tcp: there is no curl in the sandbox), a small C program compiled here, and AWS's
awslambdaric (vendored into the bundle from this test environment) started by a shell bootstrap.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import botocore.exceptions
import httpx
import pytest
from conftest import ALLOW_WEAK, children_of
from e2e_helpers import ROLE, unique_name, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "http"))
from webapp_helpers import vendored  # the FastAPI tests' vendoring, reused

SERVER_ARGS = ALLOW_WEAK
TIERS = ("process", "linux", "gvisor")
CC = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()

SHELL_BOOTSTRAP = r'''#!/bin/bash
# A custom runtime in bash alone: HTTP/1.1 over bash's /dev/tcp (no curl in the sandbox).
export LC_ALL=C
api=${AWS_LAMBDA_RUNTIME_API}
host=${api%:*} port=${api#*:}
base=/2018-06-01/runtime
last=""
echo "shell runtime: init on $api"

call() {  # METHOD PATH [BODY [EXTRA-HEADER-LINE]]: sets status, hdr_* and body
  local req=$3
  exec 3<>"/dev/tcp/$host/$port"
  printf '%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n%s\r\n%s' \
    "$1" "$2" "$host" "${4:-${#req}}" "${5:+$5$'\r\n'}" "$req" >&3
  local line name value len=0
  IFS=' ' read -r _ status _ <&3
  rid="" deadline="" arn="" trace="" cc=""
  while IFS= read -r line <&3; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    name=${line%%:*} value=${line#*: }
    case ${name,,} in
      content-length) len=$value ;;
      lambda-runtime-aws-request-id) rid=$value ;;
      lambda-runtime-deadline-ms) deadline=$value ;;
      lambda-runtime-invoked-function-arn) arn=$value ;;
      lambda-runtime-trace-id) trace=$value ;;
      lambda-runtime-client-context) cc=$value ;;
    esac
  done
  body=""
  [ "$len" -gt 0 ] && IFS= read -r -N "$len" body <&3
  exec 3<&-
}

while true; do
  call GET "$base/invocation/next"
  id=$rid event=$body
  echo "shell runtime: invocation $id"
  echo "to stderr" >&2
  case $event in
    *'"fail"'*)
      call POST "$base/invocation/$id/error" '{"errorMessage":"shell says no","errorType":"ShellError"}' \
        "" "Lambda-Runtime-Function-Error-Type: ShellError" ;;
    *'"probe"'*)
      call POST "$base/invocation/not-$id/response" '{}'; wrong=$status
      call GET "$base/invocation/next"; busy=$status
      call POST "$base/init/error" '{}'; lateinit=$status
      call POST "$base/invocation/$id/response" "{\"wrong\":$wrong,\"busy\":$busy,\"init\":$lateinit}"
      call POST "$base/invocation/$id/response" '{}'; last="again:$status" ;;
    *'"big"'*)
      call POST "$base/invocation/$id/response" "" 7000000; last="big:$status"
      call POST "$base/invocation/$id/response" '{}'; last="$last again:$status" ;;
    *'"chunked"'*)  # a body in chunks, as HTTP clients stream one
      exec 3<>"/dev/tcp/$host/$port"
      printf 'POST %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n' \
        "$base/invocation/$id/response" "$host" >&3
      printf 'Transfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n4\r\n"ch"\r\n1\r\n}\r\n0\r\n\r\n' >&3
      IFS=' ' read -r _ status _ <&3
      exec 3<&-
      last="chunked:$status" ;;
    *'"exit"'*)
      exit 3 ;;
    *)
      call POST "$base/invocation/$id/response" \
        "{\"runtime\":\"bash\",\"id\":\"$id\",\"deadline\":$deadline,\"arn\":\"$arn\",\"trace\":\"$trace\",\"cc\":${cc:-null},\"event\":$event,\"last\":\"$last\"}"
      last="ok:$status" ;;
  esac
done
'''

C_RUNTIME = r'''#define _GNU_SOURCE
/* A custom runtime in C: the Lambda Runtime API over a plain socket, HTTP/1.1 with keep-alive. */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static int conn = -1;
static char host[64];
static int port;

static int dial(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("connect"); exit(2); }
    int one = 1;  /* head and body are two writes: without this, Nagle holds the body back */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* one request; the response head goes to head (NUL-terminated), its body is returned (malloc) */
static char *call(const char *method, const char *path, const char *body, char *head, size_t cap) {
    if (conn < 0) conn = dial();
    size_t blen = body ? strlen(body) : 0;
    dprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n", method, path, host, blen);
    if (blen && write(conn, body, blen) != (ssize_t)blen) { perror("write"); exit(2); }
    size_t n = 0;
    char *end = NULL;
    while (!end) {  /* read in chunks: a syscall per byte costs much under gVisor */
        ssize_t got = read(conn, head + n, cap - 1 - n);
        if (got <= 0) { fprintf(stderr, "connection closed\n"); exit(2); }
        n += got;
        head[n] = 0;
        end = strstr(head, "\r\n\r\n");
        if (!end && n + 1 >= cap) exit(3);
    }
    end += 4;
    size_t extra = n - (size_t)(end - head);  /* the start of the body, read with the head */
    char first = *end;
    *end = 0;  /* the head alone, for its headers */
    char *cl = strcasestr(head, "content-length:");
    size_t len = cl ? strtoul(cl + 15, NULL, 10) : 0;
    *end = first;
    char *out = malloc(len + 1);
    memcpy(out, end, extra < len ? extra : len);
    *end = 0;
    for (size_t have = extra; have < len;) {
        ssize_t got = read(conn, out + have, len - have);
        if (got <= 0) exit(2);
        have += got;
    }
    out[len] = 0;
    return out;
}

static void header(const char *head, const char *name, char *out, size_t cap) {
    const char *p = strcasestr(head, name);
    out[0] = 0;
    if (!p) return;
    p += strlen(name) + 2;
    size_t i = 0;
    while (p[i] && p[i] != '\r' && i + 1 < cap) { out[i] = p[i]; i++; }
    out[i] = 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    sscanf(api, "%63[^:]:%d", host, &port);
    printf("c runtime: init, handler %s\n", getenv("_HANDLER"));
    static char head[16384], rid[128], path[256], deadline[32];
    for (;;) {
        head[0] = 0;
        char *event = call("GET", "/2018-06-01/runtime/invocation/next", NULL, head, sizeof head);
        header(head, "Lambda-Runtime-Aws-Request-Id", rid, sizeof rid);
        header(head, "Lambda-Runtime-Deadline-Ms", deadline, sizeof deadline);
        printf("c runtime: invocation %s\n", rid);
        fprintf(stderr, "c runtime: stderr too\n");
        long mb = 0;
        const char *alloc = strstr(event, "\"alloc_mb\":");
        if (alloc) mb = strtol(alloc + 11, NULL, 10);
        if (strstr(event, "\"sleep\"")) sleep(30);
        if (mb > 0) {  /* touch every page: the memory limit must stop this */
            char *big = malloc(mb << 20);
            if (!big) { fprintf(stderr, "c runtime: malloc failed\n"); abort(); }
            for (long i = 0; i < (mb << 20); i += 4096) big[i] = 1;
            printf("c runtime: touched %ld MiB\n", mb);
        }
        size_t cap = strlen(event) + 512;
        char *reply = malloc(cap);
        snprintf(reply, cap, "{\"runtime\":\"c\",\"id\":\"%s\",\"deadline\":%s,\"event\":%s}",
                 rid, deadline, event);
        snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", rid);
        head[0] = 0;
        free(call("POST", path, reply, head, sizeof head));
        if (strncmp(head, "HTTP/1.1 202", 12) != 0) fprintf(stderr, "c runtime: %.40s\n", head);
        free(reply);
        free(event);
    }
}
'''

RIC_BOOTSTRAP = """#!/bin/sh
# AWS's runtime interface client on the node's Python (first on PATH, as /var/lang/bin on Lambda)
exec python3 -m awslambdaric "$_HANDLER"
"""

RIC_APP = """
import json
import logging
import os

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    print("ric handler got", json.dumps(event))
    logger.info("logged through logging")
    if event.get("fail"):
        raise ValueError("ric says no")
    if event.get("size"):
        return "x" * event["size"]
    return {"runtime": "awslambdaric", "id": context.aws_request_id,
            "arn": context.invoked_function_arn, "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(),
            "cc": context.client_context.custom if context.client_context else None,
            "api": os.environ["AWS_LAMBDA_RUNTIME_API"], "event": event}
"""


def bundle(files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)) -> bytes:
    """A zip whose `executable` entries carry the executable bit, as `zip` keeps it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name in executable else 0o100644) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def create(lam, name: str, files: dict, tier: str, runtime: str = "provided.al2023",
           **kw) -> dict:
    files = {**files, "dayfly.toml": f'isolation = "{tier}"\n'}
    kw.setdefault("Handler", "function.handler")
    return lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE,
                               Code={"ZipFile": bundle(files)}, **kw)


def bootstraps(server, name: str) -> list[int]:
    """The live bootstrap processes of function `name` under this server (host-visible tiers)."""
    out = []
    for pid in children_of(server.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if argv0.endswith(b"/bootstrap") and f"AWS_LAMBDA_FUNCTION_NAME={name}".encode() in env:
            out.append(pid)
    return out


def call(lam, name: str, event: dict) -> tuple[dict, object, str]:
    """Invoke; (response, decoded payload, the log tail)."""
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail",
                   ClientContext=CC)
    return r, json.loads(r["Payload"].read()), base64.b64decode(r["LogResult"]).decode()


@pytest.fixture(scope="module")
def c_bootstrap(tmp_path_factory) -> bytes:
    """The C runtime, compiled for this machine (dynamically: the sandboxes have its libc)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("c") / "bootstrap"
    src = out.with_suffix(".c")
    src.write_text(C_RUNTIME)
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("tier", TIERS)
def test_shell_runtime_speaks_the_runtime_api(server, lam, tier):
    """Lambda's headers reach the runtime; response, error, wrong ids, late init errors, an
    oversized response and a runtime that exits are answered as Lambda answers them."""
    name = unique_name(f"sh-{tier}")
    cfg = create(lam, name, {"bootstrap": SHELL_BOOTSTRAP}, tier)
    assert cfg["Runtime"] == "provided.al2023"

    r, out, logs = call(lam, name, {"a": 1})
    assert "FunctionError" not in r, out
    assert out["runtime"] == "bash" and out["event"] == {"a": 1}
    assert out["id"] == r["ResponseMetadata"]["RequestId"]
    assert out["arn"] == cfg["FunctionArn"]
    assert out["cc"] == {"custom": {"k": "v"}}
    assert "shell runtime: init on 127.0.0.1:" in logs and "Init Duration" in logs
    assert f"shell runtime: invocation {out['id']}" in logs and "to stderr" in logs

    r, out, _ = call(lam, name, {"probe": 1})
    # a wrong request id: 400 (RAPID's InvalidRequestID); asking for more work while one is
    # in flight, or reporting an init error after init: 403 (InvalidStateTransition)
    assert out == {"wrong": 400, "busy": 403, "init": 403}
    r, out, logs = call(lam, name, {"x": 2})
    assert out["last"] == "again:400"  # a second answer to an answered invocation
    assert "Init Duration" not in logs  # the same, warm instance

    r, out, _ = call(lam, name, {"fail": 1})
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "ShellError" and out["errorMessage"] == "shell says no"

    r, out, _ = call(lam, name, {"big": 1})  # Content-Length past the 6 MiB response limit
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "Function.ResponseSizeTooLarge"
    r, out, _ = call(lam, name, {"y": 3})
    assert out["last"] == "big:413 again:400"

    r, out, _ = call(lam, name, {"chunked": 1})  # Transfer-Encoding: chunked
    assert out == {"a": "ch"}
    r, out, _ = call(lam, name, {"w": 4})
    assert out["last"] == "chunked:202"

    r, out, _ = call(lam, name, {"exit": 1})  # the runtime process exits mid-invocation
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in out["errorMessage"]
    r, out, logs = call(lam, name, {"z": 1})  # a fresh instance
    assert "FunctionError" not in r and "Init Duration" in logs

    record = httpx.get(f"{server.url}/dayfly/v1/invocations/"
                       f"{r['ResponseMetadata']['RequestId']}").json()
    assert record["cold"] and "shell runtime: invocation" in record["logs"]


@pytest.mark.parametrize("tier", TIERS)
def test_compiled_runtime_with_limits(server, lam, c_bootstrap, tier):
    """A compiled bootstrap: its own kind of handler name, logs from both streams, the deadline
    header, and the function's timeout and memory limit enforced on it as on a native one."""
    name = unique_name(f"c-{tier}")
    # Handler is the runtime's own business: "bootstrap", as Go and Rust functions name it
    create(lam, name, {"bootstrap": c_bootstrap}, tier, Timeout=3, MemorySize=128,
           Handler="bootstrap")
    before = time.time()
    r, out, logs = call(lam, name, {"n": 1})
    assert "FunctionError" not in r, out
    assert out["runtime"] == "c" and out["event"] == {"n": 1}
    assert before < out["deadline"] / 1000 <= time.time() + 3  # Lambda-Runtime-Deadline-Ms
    assert "c runtime: init, handler bootstrap" in logs
    assert "c runtime: stderr too" in logs

    r, out, logs = call(lam, name, {"sleep": 1})  # sleeps 30 s: killed at 3
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in out["errorMessage"]
    assert "c runtime: invocation" in logs  # what it wrote before it was killed is kept
    r, out, _ = call(lam, name, {"n": 2})
    assert "FunctionError" not in r and out["event"] == {"n": 2}
    if tier != "gvisor":  # (gVisor's processes are its own kernel's) the timed-out one is gone
        assert wait_for(lambda: len(bootstraps(server, name)) == 1), bootstraps(server, name)

    r, out, logs = call(lam, name, {"alloc_mb": 1024})  # 1 GiB under a 128 MB limit
    assert r["FunctionError"] == "Unhandled", out
    assert "touched 1024 MiB" not in logs
    r, out, _ = call(lam, name, {"n": 3})
    assert "FunctionError" not in r and out["event"] == {"n": 3}


@pytest.mark.parametrize("tier", TIERS)
def test_awslambdaric_drives_a_handler(server, lam, tier):
    """`python -m awslambdaric app.handler` from the bundle: context, errors, logs; an import
    error is awslambdaric's init error, which fails the deploy."""
    name = unique_name(f"ric-{tier}")
    files = {"bootstrap": RIC_BOOTSTRAP, "app.py": RIC_APP, **vendored("awslambdaric")}
    create(lam, name, files, tier, runtime="provided", Handler="app.handler", Timeout=10)
    r, out, logs = call(lam, name, {"hello": "ric"})
    assert "FunctionError" not in r, out
    assert out["runtime"] == "awslambdaric" and out["event"] == {"hello": "ric"}
    assert out["id"] == r["ResponseMetadata"]["RequestId"] and out["memory"] == "128"
    assert 0 < out["remaining"] <= 10000 and out["cc"] == {"k": "v"}
    assert out["api"].startswith("127.0.0.1:")
    assert 'ric handler got {"hello": "ric"}' in logs and "logged through logging" in logs

    _, out, _ = call(lam, name, {"size": 3_000_000})  # a large body (curl may ask 100-continue)
    assert out == "x" * 3_000_000

    r, out, logs = call(lam, name, {"fail": True})
    assert r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "ValueError" and out["errorMessage"] == "ric says no"
    assert any("raise ValueError" in line for line in out["stackTrace"])

    bad = {**files, "app.py": "import not_a_module_anywhere\n"}
    with pytest.raises(botocore.exceptions.ClientError) as err:
        create(lam, unique_name(f"ric-bad-{tier}"), bad, tier, runtime="provided",
               Handler="app.handler")
    assert "Unable to import module 'app'" in str(err.value)


@pytest.mark.parametrize("tier", ("linux", "gvisor"))
def test_runtime_api_is_the_instances_own(lam, tier):
    """The API listens on the instance's own loopback: nothing on the host answers at that
    address (the host opened no network for it)."""
    name = unique_name(f"api-{tier}")
    files = {"bootstrap": RIC_BOOTSTRAP, "app.py": RIC_APP, **vendored("awslambdaric")}
    create(lam, name, files, tier, runtime="provided", Handler="app.handler")
    _, out, _ = call(lam, name, {})
    host, port = out["api"].split(":")
    with socket.socket() as s, pytest.raises(OSError):
        s.settimeout(2)
        s.connect((host, int(port)))


def test_missing_bootstrap_is_a_clear_deploy_error(lam):
    with pytest.raises(botocore.exceptions.ClientError) as err:
        create(lam, unique_name("nobootstrap"), {"main.sh": "echo hi\n"}, "process")
    assert "Runtime.InvalidEntrypoint" in str(err.value)
    assert "Couldn't find valid bootstrap(s)" in str(err.value)


def test_dayfly_deploy_of_a_folder_with_a_bootstrap(server, lam, tmp_path):
    """`dayfly deploy` of a folder: dayfly.toml names the runtime and the runtime's own
    handler, the zip the CLI makes keeps the bootstrap executable."""
    name = unique_name("cli-shell")
    folder = tmp_path / name
    folder.mkdir()
    (folder / "bootstrap").write_text(SHELL_BOOTSTRAP)
    (folder / "bootstrap").chmod(0o755)
    (folder / "dayfly.toml").write_text(
        'runtime = "provided.al2023"\nhandler = "bootstrap"\nisolation = "linux"\n')
    done = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "deploy", str(folder)],
                          env={**os.environ, "DAYFLY_ENDPOINT": server.url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    r, out, _ = call(lam, name, {"from": "cli"})
    assert "FunctionError" not in r and out["event"] == {"from": "cli"}
    assert lam.get_function(FunctionName=name)["Configuration"]["Handler"] == "bootstrap"
