"""Outbound connections from inside a sandbox: direct, or tunnelled through the egress relay.

On the linux tier an instance's only way out is the HTTP proxy in its namespace (HTTP_PROXY);
every connection here is a CONNECT tunnel through it, so one keep-alive connection serves many
requests and the relay's refusal ("egress to H:P is not declared ...") reaches the caller whole.
"""

from __future__ import annotations

import http.client
import os
import smtplib
import socket
import ssl
from urllib.parse import urlsplit


class EgressRefused(ConnectionError):
    """The egress relay refused the destination (it is not declared), or could not reach it."""


def proxy_for(host: str) -> tuple[str, int] | None:
    """The proxy to tunnel through for `host`, from the environment; None to connect directly."""
    url = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")
                if os.environ.get(k)), "")
    if not url:
        return None
    no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    if any(host == n.strip() or host.endswith("." + n.strip().lstrip("."))
           for n in no_proxy.split(",") if n.strip()):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "127.0.0.1", parts.port or 3128


def connect(host: str, port: int, timeout: float | None = 30.0) -> socket.socket:
    """A TCP connection to host:port, through the proxy when one is set."""
    proxy = proxy_for(host)
    if proxy is None:
        sock = socket.create_connection((host, port), timeout)
    else:
        sock = socket.create_connection(proxy, timeout)
        try:
            _tunnel(sock, host, port)
        except BaseException:
            sock.close()
            raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _tunnel(sock: socket.socket, host: str, port: int) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise EgressRefused(f"the egress proxy closed the connection to {target}")
        head += chunk
        if len(head) > 65536:
            raise EgressRefused("the egress proxy sent an oversized answer")
    top, _, rest = head.partition(b"\r\n\r\n")
    status_line = top.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        body = rest
        try:
            sock.settimeout(2)
            while len(body) < 4096 and (more := sock.recv(4096)):
                body += more
        except OSError:
            pass
        text = body.decode(errors="replace").strip() or status_line
        raise EgressRefused(text)


class HTTPConnection(http.client.HTTPConnection):
    """http.client's connection, tunnelled through the egress proxy when there is one."""

    def connect(self) -> None:
        self.sock = connect(self.host, self.port, self.timeout)


class HTTPSConnection(http.client.HTTPSConnection):
    """The TLS variant: the tunnel first, then TLS to the real host inside it."""

    def connect(self) -> None:
        raw = connect(self.host, self.port, self.timeout)
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(raw, server_hostname=self.host)


def http_connection(url: str, timeout: float = 30.0) -> http.client.HTTPConnection:
    """A (tunnelled) connection for an http:// or https:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    cls = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    return cls(parts.hostname, parts.port, timeout=timeout)


class SMTP(smtplib.SMTP):
    """smtplib's client over a (tunnelled) connection."""

    def _get_socket(self, host, port, timeout):  # type: ignore[override]
        return connect(host, port, timeout)


class SMTP_SSL(smtplib.SMTP_SSL):
    """Implicit TLS (port 465) over a (tunnelled) connection."""

    def _get_socket(self, host, port, timeout):  # type: ignore[override]
        raw = connect(host, port, timeout)
        return self.context.wrap_socket(raw, server_hostname=host)
