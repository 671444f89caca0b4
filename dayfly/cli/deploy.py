"""`dayfly deploy DIR`: zip a folder, upload it, show the build's progress, then a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx
from rich.table import Table
from rich.text import Text

from .builtins import PREFIX as BUILTIN
from .builtins import builtin_request, wire_trigger
from .client import NAME_RE, Client, CliError, function_path, with_client
from .output import console, note, size, table
from .package import zip_dir


@click.command()
@click.argument("folder", metavar="DIR|builtin:NAME")
@click.option("--name", help="Function name (default: the folder's or the builtin's name).")
@click.option("--publish", is_flag=True, help="Also publish a numbered version.")
@click.option("--config", "config_pairs", multiple=True, metavar="KEY=VALUE",
              help="A builtin's option (repeatable; VALUE is read as TOML, else as text).")
@click.option("--config-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A builtin's options as a TOML file.")
@click.option("--trigger", is_flag=True, help="Also wire a builtin to its source bucket.")
@with_client
def deploy(client: Client, folder: str, name: str | None, publish: bool,
           config_pairs: tuple[str, ...], config_file: Path | None, trigger: bool) -> None:
    """Deploy a function from a folder, or a prebuilt one (`dayfly builtins` lists them).

    DIR holds the handler code, and optionally dayfly.toml and requirements.txt.
    """
    if folder.startswith(BUILTIN):
        name, path, body = builtin_request(folder, name, config_pairs, config_file, publish,
                                             trigger)
        request: dict[str, Any] = {"json": body}
        first = f"deploying {folder} as {name}"
    else:
        if config_pairs or config_file or trigger:
            raise click.UsageError("--config, --config-file and --trigger are for builtin:NAME")
        source = Path(folder)
        if not source.is_dir():
            raise click.BadParameter(f"{folder!r} is not a folder", param_hint="DIR")
        name = _checked(name or source.resolve().name)
        data = zip_dir(source)
        if len(data) <= 22:  # an empty zip is just its 22-byte end record
            raise click.UsageError(f"{folder} has no files to deploy")
        path = f"/dayfly/v1/functions/{function_path(name)}/deploy"
        request = {"content": data, "params": {"publish": "1"} if publish else None,
                   "headers": {"content-type": "application/zip"}}
        first = f"uploaded {size(len(data))}; deploying {name}"
    _checked(name)
    with client.stream("POST", path, **request,
                       timeout=httpx.Timeout(30, connect=5, read=None)) as records:
        result, previous, last = _follow(records, first)
    console().print(summary(result))
    console().print()
    console().print(capabilities_table(result, previous))
    if trigger:
        wire_trigger(client, name, last.get("builtin"))


def _checked(name: str) -> str:
    if not NAME_RE.match(name) or ":" in name:
        raise click.UsageError(f"{name!r} is not a valid function name (1-64 letters, digits, "
                               "'-' or '_'); choose one with --name")
    return name


def _follow(records: Any, first: str) -> tuple[dict[str, Any], dict[str, Any] | None, dict]:
    """Show progress lines (a spinner on a terminal, plain lines otherwise); the function,
    its previous configuration, and the whole final record."""
    err = console(stderr=True)
    status = err.status(first) if err.is_terminal else None
    if status is not None:
        status.start()
    else:
        note(first)
    try:
        for record in records:
            if "progress" in record:
                line = str(record["progress"]).rstrip()
                if status is not None:
                    status.update(Text(line, overflow="ellipsis", no_wrap=True))
                else:
                    err.print(Text(line), soft_wrap=True)
            elif "error" in record:
                error = record["error"] or {}
                raise CliError(str(error.get("message") or error), error.get("hint"))
            elif "function" in record:
                return record["function"], record.get("previous"), record
    finally:
        if status is not None:
            status.stop()
    raise CliError("the deploy ended without a result (did `dayfly up` stop?)")


def capabilities(fn: dict[str, Any]) -> dict[str, str]:
    """What the function is granted, one line each; everything not listed is off. On a weak
    tier only what it enforces: the rest would promise limits that are not there."""
    d = fn.get("Dayfly") or {}
    env = sorted((fn.get("Environment") or {}).get("Variables") or {})
    rows = {
        "isolation": str(d.get("Isolation")) + (f" ({d['IsolationWarning']})"
                                                if d.get("IsolationWarning") else ""),
        "network": ", ".join(d.get("Network") or []) or "none",
        "files (read-only)": ", ".join(d.get("Files") or []) or "none",
        "secrets": ", ".join(d.get("Secrets") or []) or "none",
        "buckets": ", ".join(d.get("Buckets") or []) or "none",
        "env": ", ".join(env) or "none",
        "memory": f"{fn.get('MemorySize')} MiB",
        "timeout": f"{fn.get('Timeout')} s",
        "/tmp": f"{(fn.get('EphemeralStorage') or {}).get('Size')} MiB",
        "processes": str(d.get("Pids")),
        "max output": size(d.get("MaxOutput")),
    }
    hidden = {ROWS[field] for field in d.get("NotEnforced") or () if field in ROWS}
    return {key: value for key, value in rows.items() if key not in hidden}


# the Lambda API's names of fields a tier may not enforce (Dayfly.NotEnforced) -> rows above
ROWS = {"Network": "network", "Files": "files (read-only)", "Secrets": "secrets",
        "Buckets": "buckets", "EphemeralStorage": "/tmp", "Pids": "processes"}


def capabilities_table(fn: dict[str, Any], previous: dict[str, Any] | None) -> Table:
    """Granted capabilities; with a previous version, what changed is marked old → new."""
    now = capabilities(fn)
    before = capabilities(previous) if previous else None
    warning = (fn.get("Dayfly") or {}).get("IsolationWarning")
    t = table("capability", "enforced (nothing else is: weak isolation)" if warning
              else "granted (everything else is off)")
    for key, value in now.items():
        if before is not None and before.get(key, value) != value:
            t.add_row(Text(key, style="bold yellow"),
                      Text.assemble((before[key], "red strike"), " → ", (value, "green")))
        else:
            t.add_row(key, Text(value, style="bold red" if warning and key == "isolation" else ""))
    return t


def summary(fn: dict[str, Any]) -> Table:
    """The deployed function's key facts as a two-column table."""
    t = table("", "")
    t.show_header = False
    t.columns[0].style = "bold"
    dayfly = fn.get("Dayfly") or {}
    rows = [("name", fn.get("FunctionName")), ("version", fn.get("Version")),
            ("handler", fn.get("Handler")), ("runtime", fn.get("Runtime")),
            ("memory", f"{fn.get('MemorySize')} MB"), ("timeout", f"{fn.get('Timeout')}s"),
            ("isolation", f"{dayfly.get('Isolation')} ({dayfly['IsolationWarning']})"
             if dayfly.get("IsolationWarning") else dayfly.get("Isolation")),
            ("code sha256", fn.get("CodeSha256")),
            ("size", size(fn.get("CodeSize")))]
    for key, value in rows:
        t.add_row(key, Text(str(value)))
    return t
