"""The node-to-node credential: how one cluster node proves a forwarded invoke comes from another.

`Authorization: DAYFLY-NODE node=ID,ts=MS,nonce=HEX,body=SHA256,mac=HEX`, where `mac` is
HMAC-SHA256, under a key derived from the cluster key for this use only
(`ClusterSettings.derive("node-to-node")`), of the method, the path with its query, the
timestamp, the nonce, the sending node, the receiving node and the body's SHA-256. The
receiver is not sent: a node checks the MAC with its own id, so a credential made for one node
is no good on another (each node remembers only what it saw itself: without this, one seen
on the wire replayed once on every other node within its window). gateway/auth.py accepts it on the
invoke route only (403 anywhere else, whatever the token policy), within WINDOW_S of the
receiver's clock, once (a MAC seen within the window is a replay); the body is checked against
its hash once read (`inbound`, as SigV4's x-amz-content-sha256 is), and only a RequestResponse
invoke may carry it (the only kind forwarded). The headers relayed beside it are not signed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import deque
from collections.abc import Mapping
from urllib.parse import quote, unquote

from ..errors import Forbidden
from ..gateway.classify import NODE_SCHEME as SCHEME

FORWARDED = "x-dayfly-forwarded-from"  # marks a forwarded request: it is never forwarded again
WINDOW_S = 30.0  # a credential older or newer than this (receiver's clock) is refused
_FIELDS = ("node", "ts", "nonce", "body", "mac")


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


class NodeKey:
    """Signs and checks node credentials. The replay memory (`_seen`, `_expiry`) is touched on
    the event loop only."""

    def __init__(self, key: bytes, node: str, window_s: float = WINDOW_S) -> None:
        self._key = key  # derived from the cluster key for this use alone (ClusterSettings.derive)
        self.node = node
        self.window_s = window_s
        self._seen: set[str] = set()
        self._expiry: deque[tuple[float, str]] = deque()

    def _mac(self, method: str, target: str, ts: str, nonce: str, node: str, to: str,
             body: str) -> str:
        msg = "\n".join((method, target, ts, nonce, node, quote(to, safe=""), body)).encode()
        return hmac.new(self._key, msg, "sha256").hexdigest()

    def sign(self, method: str, target: str, body: bytes, to: str,
             now: float | None = None) -> str:
        """The Authorization value for a request to `target` (path?query) with this body, for
        node `to` alone."""
        ts = str(int((time.time() if now is None else now) * 1000))
        nonce, digest, node = os.urandom(12).hex(), _digest(body), quote(self.node, safe="")
        mac = self._mac(method, target, ts, nonce, node, to, digest)
        return f"{SCHEME} node={node},ts={ts},nonce={nonce},body={digest},mac={mac}"

    def verify(self, credential: str, method: str, target: str,
               now: float | None = None) -> str | None:
        """The sending node's id if `credential` is valid for this request, else None. A valid
        credential is remembered for the window: presented again, it is a replay."""
        fields = parse(credential)
        if fields is None:
            return None
        now = time.time() if now is None else now
        ts = fields["ts"]
        if not ts.isdigit() or abs(now - int(ts) / 1000) > self.window_s:
            return None
        mac = fields["mac"]
        want = self._mac(method, target, ts, fields["nonce"], fields["node"], self.node,
                         fields["body"])
        if not hmac.compare_digest(mac, want):
            return None
        # remembered (128 bits of it) until the credential is out of its window anyway; the
        # deque is in arrival order, so an entry may outlive its expiry, never the reverse
        while self._expiry and self._expiry[0][0] < now:
            self._seen.discard(self._expiry.popleft()[1])
        seen = mac[:32]
        if seen in self._seen:
            return None
        self._seen.add(seen)
        self._expiry.append((int(ts) / 1000 + self.window_s, seen))
        return unquote(fields["node"])


def parse(credential: str) -> dict[str, str] | None:
    """The fields of a DAYFLY-NODE credential (as classify.py passes it: after the scheme)."""
    fields = dict(p.strip().partition("=")[::2] for p in credential.split(","))
    if any(not fields.get(f) for f in _FIELDS):
        return None
    return fields


def body_matches(authorization: str, body: bytes) -> bool:
    """Whether the body read is the one the (already verified) credential was made for."""
    _, _, rest = authorization.partition(" ")
    fields = parse(rest)
    return fields is not None and hmac.compare_digest(fields["body"], _digest(body))


def inbound(headers: Mapping[str, str], body: bytes, itype: str) -> bool:
    """Whether this request was forwarded here (it must not be forwarded again). A node
    credential's body hash is checked here, once the body is read: 403 if it differs, or if
    the request is not a RequestResponse invoke (the only kind forwarded)."""
    auth = headers.get("authorization", "")
    if auth.partition(" ")[0].upper() == SCHEME:
        if itype != "RequestResponse" or not body_matches(auth, body):
            raise Forbidden("the node credential was made for another request")
        return True
    return FORWARDED in headers
