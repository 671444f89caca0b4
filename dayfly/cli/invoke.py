"""`dayfly invoke NAME`: call a function and print what it returned."""

from __future__ import annotations

import base64
import binascii
import sys
from typing import IO

import click
import httpx
import orjson
from rich.text import Text

from .client import Client, check_name, function_path, with_client
from .output import console

# The server enforces the function's timeout (900 s at most); wait a little longer than that.
INVOKE_TIMEOUT = httpx.Timeout(30, connect=5, read=960)


@click.command()
@click.argument("name", callback=check_name)
@click.option("--payload", "-p", metavar="JSON", help="The event, as JSON ('-' reads stdin).")
@click.option("--payload-file", type=click.File("rb"), metavar="FILE",
              help="Read the event from FILE ('-' for stdin).")
@click.option("--qualifier", "-q", metavar="Q", help="A version number or an alias.")
@click.option("--async", "is_async", is_flag=True,
              help="Queue the event and return at once (InvocationType Event).")
@click.option("--log", is_flag=True, help="Also print the invocation's log tail to stderr.")
@with_client
def invoke(client: Client, name: str, payload: str | None, payload_file: IO[bytes] | None,
           qualifier: str | None, is_async: bool, log: bool) -> None:
    """Invoke a function and print its response."""
    body = _payload(payload, payload_file)
    if is_async and log:
        raise click.UsageError("--log needs a synchronous invocation; for queued ones, "
                               "see `dayfly logs NAME`")
    headers = {"content-type": "application/json"}
    if is_async:
        headers["X-Amz-Invocation-Type"] = "Event"
    if log:
        headers["X-Amz-Log-Type"] = "Tail"
    response = client.request("POST", f"/2015-03-31/functions/{function_path(name)}/invocations",
                              content=body, headers=headers,
                              params={"Qualifier": qualifier} if qualifier else None,
                              timeout=INVOKE_TIMEOUT)
    if is_async:
        click.echo(response.headers.get("x-amzn-requestid", ""))
        return
    if log and "x-amz-log-result" in response.headers:
        _print_log(response.headers["x-amz-log-result"])
    if "x-amz-function-error" in response.headers:
        _print_function_error(response.content, response.headers["x-amz-function-error"])
        raise click.exceptions.Exit(1)
    _print_payload(response.content)


def _payload(payload: str | None, payload_file: IO[bytes] | None) -> bytes:
    """The event bytes, checked to be JSON before anything is sent."""
    if payload is not None and payload_file is not None:
        raise click.UsageError("give the event with --payload or with --payload-file, not both")
    if payload == "-":
        raw = sys.stdin.buffer.read()
        where = "stdin"
    elif payload is not None:
        raw = payload.encode()
        where = "--payload"
    elif payload_file is not None:
        raw = payload_file.read()
        where = "--payload-file"
    else:
        return b"{}"
    if not raw.strip():
        return b"{}"
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=where) from None
    return raw


def _print_log(encoded: str) -> None:
    try:
        text = base64.b64decode(encoded).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return
    sys.stdout.flush()
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _print_function_error(body: bytes, kind: str) -> None:
    """errorType: errorMessage, then the stack trace, in red on stderr."""
    err = console(stderr=True)
    try:
        error = orjson.loads(body)
    except orjson.JSONDecodeError:
        error = None
    if not isinstance(error, dict):
        err.print(Text(f"function error ({kind}): {body.decode('utf-8', 'replace')}", "red"))
        return
    head = f"{error.get('errorType') or kind}: {error.get('errorMessage', '')}"
    err.print(Text(head, "bold red"), soft_wrap=True)
    trace = error.get("stackTrace") or []
    if isinstance(trace, list):
        for frame in trace:
            err.print(Text(str(frame).rstrip("\n"), "red"), soft_wrap=True)


def _print_payload(body: bytes) -> None:
    """Pretty JSON on a terminal; the raw bytes for pipes."""
    out = console()
    if out.is_terminal:
        try:
            out.print_json(body.decode("utf-8", "replace"))
            return
        except ValueError:
            pass
    sys.stdout.flush()
    sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
    sys.stdout.flush()
