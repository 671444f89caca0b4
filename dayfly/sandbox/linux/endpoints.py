"""What a function's declared `network` becomes inside its sandbox (native egress).

Each declared `host:port` gets an address and port inside the sandbox where a listening socket
(a "door") waits; the host relays what connects there to the declared destination, and to
nothing else (docs/decisions/0012-native-egress.md). An address is used as written; `localhost`
is 127.0.0.1; any other name gets an address of its own in 127.1.0.0/24 (loopback: nothing to
configure, gVisor's loopback binds it too), which the sandbox's /etc/hosts gives it. The
host resolves the name when it connects, as a proxy would.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ...errors import InvalidParameter

NAMED = "127.1.0."  # declared names: 127.1.0.1, .2, ... inside the sandbox
HOSTS = "127.0.0.1 localhost dayfly\n::1 localhost\n"  # /etc/hosts without declared names


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One declared destination: the sandbox connects to `bind`:`port`, the host to
    `host`:`port` (`host` as declared, brackets removed)."""

    host: str
    port: int
    bind: str

    @property
    def upstream(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def on_loopback(self) -> bool:
        """Whether `bind` is on every loopback already (else it is added to the sandbox's lo)."""
        return ipaddress.ip_address(self.bind).is_loopback

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.bind).version


def plan(network: tuple[str, ...] | list[str], *, reserved: tuple[str, int] | None = None,
         loopback_only: str = "") -> list[Endpoint]:
    """The endpoints of a declared `network` list (entries validated at deploy: host:port).
    `reserved` is an address the sandbox already uses (the HTTP proxy's); `loopback_only`
    names a tier that can bind declared addresses on its loopback only (gVisor): a
    declared address elsewhere is refused there, with that tier named."""
    literal: list[Endpoint] = []
    names: list[tuple[str, int]] = []
    for entry in network:
        host, _, port_s = entry.rpartition(":")
        host, port = host.strip("[]").lower(), int(port_s)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost":
                literal.append(Endpoint(host, port, "127.0.0.1"))
            else:
                names.append((host, port))
            continue
        if ip.is_unspecified or ip.is_multicast:
            raise InvalidParameter(f"network: {entry!r} is not a destination")
        if loopback_only and not ip.is_loopback:
            raise InvalidParameter(
                f"network: the {loopback_only} tier offers declared destinations on its own "
                f"loopback only, and {entry!r} is an address outside it; declare it by a name "
                "this node resolves (e.g. db.internal:5432), or use the linux tier")
        literal.append(Endpoint(host, port, str(ip)))
    used = {(e.bind, e.port) for e in literal}
    taken = {e.bind for e in literal}
    addresses: dict[str, str] = {}
    out = list(literal)
    for host, port in sorted(names):
        if host not in addresses:
            n = len(addresses) + 1
            while f"{NAMED}{n}" in taken:  # a declared address there keeps its own
                n += 1
            addresses[host] = f"{NAMED}{n}"
            taken.add(addresses[host])
        out.append(Endpoint(host, port, addresses[host]))
        used.add((addresses[host], port))
    for e in out:
        if reserved is not None and (e.bind, e.port) == reserved:
            raise InvalidParameter(
                f"network: {e.host}:{e.port} is where the sandbox's HTTP proxy listens; "
                "declare the service by a name this node resolves instead")
    if len(used) != len(out):
        raise InvalidParameter("network: two entries name the same destination")
    return out


def hosts_file(endpoints: list[Endpoint]) -> str:
    """The sandbox's /etc/hosts: localhost, and each declared name at its address."""
    lines = {f"{e.bind} {e.host}\n" for e in endpoints if e.bind.startswith(NAMED)
             and e.host != e.bind}
    return HOSTS + "".join(sorted(lines))
