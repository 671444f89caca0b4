"""AWS Signature Version 4 for S3 requests (header signing), with hmac and hashlib only."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY = hashlib.sha256(b"").hexdigest()


def encode_key(key: str) -> str:
    """An object key as a URI path (each byte escaped except unreserved characters and '/')."""
    return quote(key, safe="/-_.~")


def canonical_query(query: dict[str, str] | None) -> str:
    """Query parameters sorted and escaped as SigV4 (and the wire) want them."""
    if not query:
        return ""
    pairs = sorted((quote(k, safe="-_.~"), quote(str(v), safe="-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def _key(secret: str, date: str, region: str) -> bytes:
    k = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    return k


def sign(method: str, host: str, path: str, query: str, headers: dict[str, str],
         payload_hash: str, key_id: str, secret: str, region: str,
         session_token: str | None = None, now: float | None = None) -> dict[str, str]:
    """`headers` plus host, x-amz-date, x-amz-content-sha256 and the Authorization header."""
    t = time.gmtime(now if now is not None else time.time())
    stamp, date = time.strftime("%Y%m%dT%H%M%SZ", t), time.strftime("%Y%m%d", t)
    h = {k.lower(): str(v).strip() for k, v in headers.items()}
    h.update({"host": host, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash})
    if session_token:
        h["x-amz-security-token"] = session_token
    names = sorted(h)
    canonical = "\n".join([method, path, query, "".join(f"{n}:{h[n]}\n" for n in names),
                           ";".join(names), payload_hash])
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return h
