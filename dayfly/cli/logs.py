"""`dayfly logs NAME`: the Lambda-style log lines of recent invocations, optionally followed."""

from __future__ import annotations

import re
import time

import click
import httpx
import orjson
from rich.console import Console
from rich.text import Text

from .client import Client, check_name, function_path, with_client
from .output import console, note

# While following, the server sends a keep-alive line every 15 s; a longer silence means it died.
FOLLOW_TIMEOUT = httpx.Timeout(30, connect=5, read=60)
ERROR_STARTS = ("[ERROR]", "Traceback (most recent call last)")
LAMBDA_LINES = ("START RequestId:", "END RequestId:", "REPORT RequestId:")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


@click.command()
@click.argument("name", callback=check_name)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new invocations (Ctrl-C stops).")
@click.option("-n", "--lines", "limit", default=20, show_default=True,
              type=click.IntRange(1, 1000), help="How many recent invocations to show.")
@click.option("--since", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Only invocations that started less than SECONDS ago.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the API's records (one JSON object a line) instead of the text.")
@with_client
def logs(client: Client, name: str, follow: bool, limit: int, since: float | None,
         as_json: bool) -> None:
    """Print a function's recent logs (-f follows new ones)."""
    params: dict[str, str | int | float] = {"limit": limit}
    if follow:
        params["follow"] = 1
    if since is not None:
        params["since"] = time.time() - since
    out = console()
    shown = 0
    try:
        with client.stream("GET", f"/dayfly/v1/functions/{function_path(name)}/logs",
                           params=params, timeout=FOLLOW_TIMEOUT) as records:
            for record in records:
                if as_json:
                    out.file.write(orjson.dumps(record).decode() + "\n")
                    out.file.flush()
                else:
                    print_record(out, str(record.get("text") or ""), str(record.get("node") or ""))
                shown += 1
    except KeyboardInterrupt:
        return
    if not shown and not follow:
        note(f"no invocations of {name} {'in that time' if since is not None else 'yet'}")


def print_record(out: Console, text: str, node: str = "") -> None:
    """One invocation's log text: errors and their tracebacks red, REPORT lines dim; in a
    cluster, first the node that ran it."""
    if node:
        text = f"[node {node}]\n{text}"
    if not out.is_terminal:  # pipes get the text as is, tabs included
        out.file.write(text if text.endswith("\n") else text + "\n")
        out.file.flush()
        return
    in_error = False
    for line in text.splitlines():
        if line.startswith(ERROR_STARTS) or "Task timed out after" in line:
            in_error = True
        elif in_error and not line[:1].isspace():
            # a traceback's last line names the exception: "ValueError: boom"
            in_error = bool(EXCEPTION_LINE.match(line)) and not line.startswith(LAMBDA_LINES)
        style = ("dim" if line.startswith(("REPORT", "[node ")) else "red" if in_error
                 else "")
        out.print(Text(line, style), soft_wrap=True)
    out.file.flush()
