"""AWS Signature Version 4 verification for S3: Authorization headers and presigned URLs.

The canonical request is rebuilt from what arrived, the way S3 does it: the path is decoded
and encoded once (S3 does not normalise `.` or `//`), query pairs are decoded, re-encoded with
the unreserved set and sorted, header values trimmed with inner spaces collapsed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from calendar import timegm
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from ...numbers import uint
from ...stores.s3errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 15 * 60
MAX_EXPIRES = 7 * 24 * 3600

PRESIGNED = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date",
                       "X-Amz-Expires", "X-Amz-SignedHeaders"})


def v2_refused() -> S3Error:
    """S3's answer to Signature Version 2 where only version 4 is accepted (newer regions)."""
    return S3Error("InvalidRequest", "The authorization mechanism you have provided is not "
                   "supported. Please use AWS4-HMAC-SHA256.")


Query = list[tuple[str, str]]
Scope = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Auth:
    """A verified request: who signed it, and what aws-chunked signatures chain from."""

    key_id: str
    signing_key: bytes
    scope: str  # date/region/s3/aws4_request
    timestamp: str  # yyyymmddThhmmssZ
    signature: str  # the seed signature of a streaming upload
    payload: str  # x-amz-content-sha256: a hex hash, UNSIGNED-PAYLOAD or STREAMING-*
    presigned: bool


def parse_query(raw: bytes) -> Query:
    """Query pairs, percent-decoded ('+' stays '+', as S3 reads it)."""
    pairs = []
    for part in raw.split(b"&"):
        if part:
            k, _, v = part.partition(b"=")
            try:
                pairs.append((unquote_to_bytes(k).decode(), unquote_to_bytes(v).decode()))
            except UnicodeDecodeError:
                raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from None
    return pairs


def _enc(s: str) -> str:
    return quote(s, safe="-_.~")


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    return k


def sign(key: bytes, string_to_sign: str) -> str:
    return hmac.new(key, string_to_sign.encode(), "sha256").hexdigest()


def _epoch(stamp: str) -> float:
    try:
        return timegm(time.strptime(stamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date "
                      "header") from None


def _from_date(value: str) -> str:
    """An HTTP Date header's time in SigV4's form (a request may be dated by it instead of
    x-amz-date); "" if there is none or it does not parse."""
    try:
        return time.strftime("%Y%m%dT%H%M%SZ", parsedate_to_datetime(value).utctimetuple())
    except (TypeError, ValueError, IndexError):
        return ""


def _header_values(headers: list[tuple[bytes, bytes]], name: str) -> str:
    raw = name.encode()
    # bytes.split: ASCII whitespace only (a UTF-8 value's bytes may look like Latin-1 spaces)
    return ",".join(b" ".join(v.split()).decode("latin-1") for k, v in headers if k == raw)


def _credential(value: str) -> tuple[str, str, str, str]:
    """key id, date, region, scope from `KEY/DATE/REGION/s3/aws4_request`."""
    parts = value.split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request" or not parts[0]:
        raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; "
                      f"the Credential is mal-formed: {value[:200]}")
    return parts[0], parts[1], parts[2], "/".join(parts[1:])


def verify(scope: Scope, query: Query, secret_of: Callable[[str], str | None],
           now: float | None = None) -> Auth:
    """Check the request's signature (header or presigned); raise S3Error if it does not hold."""
    now = time.time() if now is None else now
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    auth = _header_values(headers, "authorization")
    if auth:
        return _verify_header(scope, query, auth, secret_of, now)
    names = {k for k, _ in query}
    if "AWSAccessKeyId" in names and "Signature" in names and "X-Amz-Credential" not in names:
        raise v2_refused()
    if not names & PRESIGNED:
        return anonymous(scope)
    return _verify_presigned(scope, query, secret_of, now)


def anonymous(scope: Scope) -> Auth:
    """A request that carries no credential: nobody's (key id ""); what it may do is the
    bucket's ACL and policy's say (access.py)."""
    payload = _header_values(scope["headers"], "x-amz-content-sha256") or UNSIGNED
    return Auth("", b"", "", "", "", payload, False)


def _verify_header(scope: Scope, query: Query, auth: str,
                   secret_of: Callable[[str], str | None], now: float) -> Auth:
    alg, _, rest = auth.partition(" ")
    if alg == "AWS":
        raise v2_refused()
    if alg != ALGORITHM:
        raise S3Error("InvalidArgument", f"Unsupported Authorization Type {alg[:40]}")
    fields = dict(p.strip().partition("=")[::2] for p in rest.split(","))
    try:
        credential, signed, signature = (fields["Credential"], fields["SignedHeaders"],
                                         fields["Signature"])
    except KeyError:
        raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed; "
                      "it needs Credential, SignedHeaders and Signature") from None
    headers = scope["headers"]
    stamp = _header_values(headers, "x-amz-date") or _from_date(_header_values(headers, "date"))
    payload = _header_values(headers, "x-amz-content-sha256")
    if not payload:
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                      "x-amz-content-sha256")
    return _check(scope, query, credential, signed, signature, stamp, payload, secret_of, now,
                  presigned=False)


def _verify_presigned(scope: Scope, query: Query, secret_of: Callable[[str], str | None],
                      now: float) -> Auth:
    q = dict(query)
    try:
        alg, credential, stamp, expires, signed, signature = (
            q["X-Amz-Algorithm"], q["X-Amz-Credential"], q["X-Amz-Date"], q["X-Amz-Expires"],
            q["X-Amz-SignedHeaders"], q["X-Amz-Signature"])
    except KeyError as exc:
        raise S3Error("AuthorizationQueryParametersError", "Query-string authentication "
                      f"version 4 requires the {exc.args[0]} parameter") from None
    if alg != ALGORITHM:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Algorithm only supports "
                      f"\"{ALGORITHM}\"")
    lifetime = uint(expires, 10)
    if lifetime is None or not 1 <= lifetime <= MAX_EXPIRES:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and "
                      f"{MAX_EXPIRES} seconds")
    payload = _header_values(scope["headers"], "x-amz-content-sha256") or UNSIGNED
    out = _check(scope, [(k, v) for k, v in query if k != "X-Amz-Signature"], credential, signed,
                 signature, stamp, payload, secret_of, now, presigned=True)
    signed_at = _epoch(stamp)
    if now > signed_at + lifetime:
        raise S3Error("AccessDenied", "Request has expired", **{"X-Amz-Expires": expires},
                      Expires=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                            time.gmtime(signed_at + lifetime)),
                      ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    if signed_at > now + MAX_SKEW:
        raise S3Error("AccessDenied", "Request is not valid yet")
    return out


def _check(scope: Scope, query: Query, credential: str, signed: str, signature: str, stamp: str,
           payload: str, secret_of: Callable[[str], str | None], now: float, *,
           presigned: bool) -> Auth:
    key_id, date, region, cred_scope = _credential(credential)
    secret = secret_of(key_id)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist "
                      "in our records.", AWSAccessKeyId=key_id[:128])
    signed_at = _epoch(stamp)
    if stamp[:8] != date:
        raise S3Error("AuthorizationHeaderMalformed", "Invalid credential date. Date is not the "
                      "same as X-Amz-Date.")
    if not presigned and abs(now - signed_at) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", "The difference between the request time and the "
                      "current time is too large.", RequestTime=stamp,
                      ServerTime=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW * 1000))
    names = signed.split(";")
    if "host" not in names:
        raise S3Error("AccessDenied", "The host header must be signed")
    canonical = "\n".join([
        scope["method"],
        quote(unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()), safe="/~"),
        "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in query)),
        "".join(f"{n}:{_header_values(scope['headers'], n)}\n" for n in names),
        signed,
        payload,
    ])
    to_sign = "\n".join([ALGORITHM, stamp, cred_scope,
                         # header values are the bytes that arrived (latin-1 is their 1:1
                         # decoding; UTF-8 x-amz-meta-* values are signed as sent)
                         hashlib.sha256(canonical.encode("latin-1")).hexdigest()])
    key = signing_key(secret, date, region)
    if not hmac.compare_digest(sign(key, to_sign), signature):
        raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does not "
                      "match the signature you provided. Check your key and signing method.",
                      AWSAccessKeyId=key_id, StringToSign=to_sign, SignatureProvided=signature,
                      CanonicalRequest=canonical)
    return Auth(key_id, key, cred_scope, stamp, signature, payload, presigned)
