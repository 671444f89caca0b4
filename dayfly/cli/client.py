"""The CLI's one way to talk to a running `dayfly up`, and its one error type.

    click.ClickException
    └── CliError            one message line (maybe more for a handler's error), plus a hint
        ├── from an error response: the server's `message` and `hint`
        └── from a transport failure: "cannot reach dayfly at URL — is `dayfly up` running?"

Every command gets a `Client` from `@with_client`, so none of them sees httpx's exceptions.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx
import orjson

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
NOT_FOUND_RE = re.compile(r"^(Function|Alias) not found: arn:\S+?:function:([^:\s]+)(?::(\S+))?$")
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}(:(\$LATEST|[A-Za-z0-9_-]{1,128}))?$")


class CliError(click.ClickException):
    """A failure the user can act on: shown as `Error: message` and `hint: ...`, exit code 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def show(self, file: Any = None) -> None:
        click.echo(click.style("Error: ", fg="red", bold=True) + self.message, err=True)
        if self.hint:
            click.echo(click.style("hint: ", fg="yellow") + self.hint, err=True)


def error_of(response: httpx.Response) -> CliError:
    """The CliError for an error response (Lambda's JSON error shape, or anything else)."""
    try:
        body = orjson.loads(response.read())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or "message" not in body:
        text = response.text.strip().splitlines()
        return CliError(f"dayfly answered HTTP {response.status_code}"
                        + (f": {text[0][:200]}" if text else ""))
    message = str(body["message"])
    return CliError(message, body.get("hint") or _hint(message))


def _hint(message: str) -> str | None:
    """A next step for the not-found errors, which the server sends without a hint."""
    m = NOT_FOUND_RE.match(message)
    if m is None:
        return None
    kind, name, qualifier = m.groups()
    if kind == "Alias":
        return f"`dayfly alias ls {name}` lists its aliases"
    if qualifier:
        return f"`dayfly versions {name}` lists its versions"
    return "`dayfly ls` lists the deployed functions"


def function_path(name: str) -> str:
    """A function name (or name:qualifier) as a URL path segment."""
    return quote(name, safe=":$")


def check_name(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    """Click callback: refuse a malformed function name before any request."""
    if not NAME_RE.match(value):
        raise click.BadParameter(f"{value!r} is not a function name (1-64 letters, digits, "
                                 "'-' or '_', optionally ':qualifier')")
    return value


def default_token() -> str | None:
    """$DAYFLY_TOKEN, else the `token` file a node writes in its data directory (if readable)."""
    token = os.environ.get("DAYFLY_TOKEN", "").strip()
    if token:
        return token
    path = Path(os.environ.get("DAYFLY_DATA_DIR", "~/.dayfly")).expanduser() / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class Client:
    """httpx against one dayfly endpoint; raises CliError, never an httpx exception."""

    def __init__(self, endpoint: str, token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else None
        self.http = httpx.Client(base_url=self.endpoint, timeout=httpx.Timeout(30, connect=5),
                                 headers=headers)

    def close(self) -> None:
        self.http.close()

    def _unreachable(self, exc: httpx.TransportError) -> CliError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return CliError(f"cannot reach dayfly at {self.endpoint} — is `dayfly up` running?",
                            "point the CLI at another node with `--endpoint URL` or "
                            "DAYFLY_ENDPOINT=URL (`dayfly up --port N` picks the port)")
        if isinstance(exc, httpx.TimeoutException):
            return CliError(f"dayfly at {self.endpoint} did not answer in time")
        return CliError(f"dayfly at {self.endpoint} closed the connection (did `dayfly up` "
                        f"stop?): {exc}".rstrip(": "))

    def request(self, method: str, path: str, *, allow: tuple[int, ...] = (),
                **kw: Any) -> httpx.Response:
        """One request; an error status (unless in `allow`) raises CliError."""
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400 and response.status_code not in allow:
            raise error_of(response)
        return response

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """The decoded JSON body of a successful request."""
        response = self.request(method, path, **kw)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise CliError(f"dayfly answered {method} {path} with something that is not "
                           "JSON") from None

    @contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[Iterator[dict[str, Any]]]:
        """NDJSON records of a streamed response, skipping blank keep-alive lines."""
        try:
            with self.http.stream(method, path, **kw) as response:
                if response.status_code >= 400:
                    raise error_of(response)
                yield _records(response.iter_lines())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None


def _records(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise CliError(f"dayfly sent a line that is not JSON: {line[:200]!r}") from None
        if isinstance(record, dict):
            yield record


def _check_endpoint(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} must start with http:// or https://")
    return value


def with_client(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add `--endpoint` (or $DAYFLY_ENDPOINT) and `--token` (or $DAYFLY_TOKEN) and pass a
    Client as the first argument."""

    @click.option("--endpoint", envvar="DAYFLY_ENDPOINT", default=DEFAULT_ENDPOINT,
                  show_default=True, metavar="URL", callback=_check_endpoint,
                  help="The dayfly API (or $DAYFLY_ENDPOINT).")
    @click.option("--token", metavar="TOKEN", default=None,
                  help="API token (default: $DAYFLY_TOKEN, else the data directory's `token` "
                       "file).")
    @functools.wraps(f)
    def wrapper(*args: Any, endpoint: str, token: str | None, **kw: Any) -> Any:
        client = Client(endpoint, token or default_token())
        try:
            return f(client, *args, **kw)
        finally:
            client.close()

    return wrapper
