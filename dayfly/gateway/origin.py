"""Cross-site and DNS-rebinding requests, refused at the front door, before auth and the fast path.

A browser lets any page it shows send GETs and "simple" POSTs (a form's content types, no
custom header, no preflight) to any address, loopback included; DNS rebinding even points a
page's own name at 127.0.0.1. A loopback node without tokens trusts its callers by where they
are, so a page the operator opens could deploy and run code. Three checks (`refusal`), each
answered with a 403 that says what to configure:

1. Host must be one of the node's own names: an address literal (no DNS name, so nothing to
   rebind), `localhost`, the address `--host` names, the machine's hostname, or a name given
   with `--allow-host` (`*` accepts any).
2. Origin, when sent, must be the node itself (its host:port equals Host) or one given with
   `--allow-origin`. Browsers send Origin with every cross-origin fetch and every POST.
3. A POST to the management API (the API family: Lambda and dayfly APIs) must not be a CORS
   simple request: a content type other than the three form ones (and not none), or a header
   no page can send without a preflight (Authorization, any X-...); dayfly never approves a
   preflight. Invokes and ingest webhooks are exempt (curl -d, webhooks of other services);
   checks 1 and 2 cover them.

The S3 family is exempt from all three: SigV4 covers the Host header (a signature made for
the node's name fails under any other), a foreign page cannot sign, and a presigned URL handed
to a page on another origin is meant to be used from there; an unsigned S3 request carries no
authority (the S3 endpoint reads no cookie or token) and gets only what a bucket grants
everyone, and the bucket's CORS rules decide what a page may read. So are requests with
a cluster node's credential (another node forwarding an invoke, to whatever name its advertise
URL has): no page can make one without the cluster key, and auth.py checks it right after.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from .classify import Family, Form, Route, route
from .common import error_response

log = logging.getLogger("dayfly.gateway")

LOG_BURST, LOG_WINDOW_S = 20, 10.0  # refusals logged one by one per window; then counted
SIMPLE_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded",
                          "multipart/form-data"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})


@dataclass(frozen=True, slots=True)
class Policy:
    """The node's own names and the origins it accepts besides its own."""

    hosts: frozenset[str]  # lower case, no port, no brackets
    origins: frozenset[str]  # scheme://host[:port], lower case
    any_host: bool = False

    @classmethod
    def of(cls, bind: str, allow_hosts: Iterable[str] = (),
           allow_origins: Iterable[str] = ()) -> Policy:
        hosts = {"localhost"}
        if bind not in _WILDCARD_BINDS:
            hosts.add(host_name(bind))
        machine = socket.gethostname().lower()
        hosts.update({machine, machine.split(".", 1)[0]})
        allowed = {host_name(h) for h in allow_hosts}
        return cls(frozenset(hosts | allowed - {"*"}),
                   frozenset(o.strip().rstrip("/").lower() for o in allow_origins),
                   "*" in allowed)

    def own_host(self, name: str) -> bool:
        if self.any_host or name in self.hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True  # an address literal is no DNS name: there is nothing to rebind


def host_name(authority: str) -> str:
    """`Name` of `name:port`, `[::1]:port`, `Name.` ..., lower case, without port."""
    a = authority.strip().lower()
    if a.startswith("[") and "]" in a:
        a, rest = a[1:].split("]", 1)
        return a if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else authority
    name, sep, port = a.rpartition(":")
    if sep and ":" not in name and (port.isdigit() or not port):
        a = name  # else an IPv6 literal without brackets, or junk: checked whole
    return a.rstrip(".")


def refusal(policy: Policy, r: Route, method: str, headers: Iterable[tuple[bytes, bytes]]
            ) -> tuple[str, str] | None:
    """Why the request is refused (message, hint), or None to let it through."""
    if r.family is Family.S3 or r.form is Form.NODE:
        return None
    hosts: list[str] = []
    origin = content_type = None
    custom = False
    for name, value in headers:
        if name == b"host":
            hosts.append(value.decode("latin-1"))
        elif name == b"origin":
            origin = value.decode("latin-1").strip()
        elif name == b"content-type":
            content_type = value.decode("latin-1")
        elif name == b"authorization" or name.startswith(b"x-"):
            custom = True
    for host in hosts:
        if not policy.own_host(host_name(host)):
            return (f"Host {host[:100]!r} is not a name of this dayfly node (refused: a page "
                    "could reach it by DNS rebinding)",
                    "start dayfly with `--allow-host NAME` to accept another name")
    if origin is not None and not _own_origin(policy, origin, hosts):
        return (f"cross-site request from origin {origin[:100]!r} refused",
                "a page of another origin may not call this node; `dayfly up --allow-origin "
                "ORIGIN` allows one (e.g. behind a proxy that changes Host)")
    if r.family is Family.API and method == "POST" and not custom:
        essence = (content_type or "").split(";", 1)[0].strip().lower()
        if essence in SIMPLE_TYPES:
            return (f"a POST to the management API needs a content type such as "
                    f"application/json or application/zip, not {essence or 'none'!r} (any web "
                    "page can send that)", "send Content-Type: application/json (or "
                    "application/zip for a deploy), or an Authorization header")
    return None


def _own_origin(policy: Policy, origin: str, hosts: list[str]) -> bool:
    o = origin.rstrip("/").lower()
    if o in policy.origins:
        return True
    _, sep, authority = o.partition("://")
    return bool(sep) and len(hosts) == 1 and authority == hosts[0].strip().lower()


class OriginGuard:
    """ASGI: answers 403 to a request `refusal` refuses; passes the rest on."""

    def __init__(self, app: ASGIApp, policy: Policy,
                 function_s3: tuple[str, int] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.function_s3 = function_s3
        self._window, self._logged, self._unlogged = 0.0, 0, 0  # a page may send thousands

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        r = route(scope, self.function_s3)
        why = refusal(self.policy, r, scope.get("method", "GET"), scope["headers"])
        if why is None:
            await self.app(scope, receive, send)
            return
        self._log(scope, why[0])
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        await error_response("AccessDeniedException", why[0], 403, why[1])(scope, receive, send)

    def _log(self, scope: Scope, why: str) -> None:
        now = time.monotonic()
        if now - self._window >= LOG_WINDOW_S:
            if self._unlogged:
                log.warning("refused %d more cross-site or foreign-Host requests in the last "
                            "%.0f s (not logged one by one)", self._unlogged, LOG_WINDOW_S)
            self._window, self._logged, self._unlogged = now, 0, 0
        if self._logged >= LOG_BURST:
            self._unlogged += 1
            return
        self._logged += 1
        log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"),
                    scope.get("path", "")[:200], why)
