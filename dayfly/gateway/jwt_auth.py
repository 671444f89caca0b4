"""JWT bearer tokens for routes with `auth = "jwt"`: RS256 and ES256 signatures checked against
a JWKS (a file on the node or an http(s) URL it can reach), then `iss`, `aud`, `exp`, `nbf`.

Only the algorithms named here are accepted, whatever the token's header says (`none` and
HMAC algorithms are refused, so a public key can never be used as an HMAC secret). A JWKS is
kept in memory for `TTL_S`; a token naming an unknown `kid` refetches it at most once per
`REFETCH_S`, so forged kids cannot make the node hammer the JWKS URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

ALGORITHMS = ("RS256", "ES256")
TTL_S, REFETCH_S, LEEWAY_S = 300.0, 30.0, 60
MAX_TOKEN = 16 * 1024


class JwtError(Exception):
    """Why a token was refused (said to the caller in a 401)."""


def _b64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("the token is not base64url") from None


def _int(part: str) -> int:
    return int.from_bytes(_b64(part), "big")


def _public_key(jwk: dict[str, Any]) -> Any:
    try:
        if jwk.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]),
                                                 ec.SECP256R1()).public_key()
    except (KeyError, ValueError, TypeError):
        return None
    return None


class Keys:
    """One JWKS source's keys by kid, refreshed from its file or URL."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: dict[str | None, Any] = {}
        self.fetched = 0.0
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> Any:
        now, seen = time.monotonic(), self.fetched
        if now - seen > TTL_S or (kid not in self.keys and now - seen > REFETCH_S):
            async with self._lock:
                if self.fetched == seen:  # nobody refreshed while this one waited
                    await self._load()
        key = self.keys.get(kid)
        if key is None and kid is None and len(self.keys) == 1:
            key = next(iter(self.keys.values()))
        return key

    async def _load(self) -> None:
        self.fetched = time.monotonic()
        try:
            if self.source.startswith(("http://", "https://")):
                async with httpx.AsyncClient(timeout=5) as client:
                    r = await client.get(self.source)
                    r.raise_for_status()
                    raw = r.content
            else:
                raw = await asyncio.to_thread(Path(self.source).read_bytes)
            doc = orjson.loads(raw)
        except (OSError, httpx.HTTPError, orjson.JSONDecodeError) as exc:
            raise JwtError(f"the route's JWKS could not be read ({type(exc).__name__})") from None
        keys: dict[str | None, Any] = {}
        for jwk in doc.get("keys", []) if isinstance(doc, dict) else []:
            if isinstance(jwk, dict):
                k = _public_key(jwk)
                if k is not None:
                    keys[jwk.get("kid")] = k
        self.keys = keys


class Verifier:
    """Every JWKS source routes name, shared by the routes that name it."""

    def __init__(self) -> None:
        self.sources: dict[str, Keys] = {}

    async def verify(self, token: str, conf: dict[str, Any], now: float | None = None
                     ) -> dict[str, Any]:
        """The token's claims if it holds for `conf` (issuer, audiences, jwks); else JwtError."""
        if len(token) > MAX_TOKEN or token.count(".") != 2:
            raise JwtError("the bearer token is not a JWT")
        head_b64, claims_b64, sig_b64 = token.split(".")
        try:
            header = orjson.loads(_b64(head_b64))
            claims = orjson.loads(_b64(claims_b64))
        except orjson.JSONDecodeError:
            raise JwtError("the token's header or claims are not JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise JwtError("the token's header or claims are not JSON objects")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise JwtError(f"algorithm {str(alg)[:20]!r} is not accepted (only "
                           f"{', '.join(ALGORITHMS)})")
        source = self.sources.get(conf["jwks"])
        if source is None:
            source = self.sources[conf["jwks"]] = Keys(conf["jwks"])
        key = await source.get(header.get("kid"))
        if key is None:
            raise JwtError("the token's key (kid) is not in the route's JWKS")
        signed, sig = f"{head_b64}.{claims_b64}".encode(), _b64(sig_b64)
        try:
            if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(sig) == 64:
                der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                           int.from_bytes(sig[32:], "big"))
                key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
            else:
                raise JwtError(f"the token's algorithm {alg} does not fit its key")
        except InvalidSignature:
            raise JwtError("the token's signature does not verify") from None
        _check_claims(claims, conf, time.time() if now is None else now)
        return claims


def _check_claims(claims: dict[str, Any], conf: dict[str, Any], now: float) -> None:
    if claims.get("iss") != conf["issuer"]:
        raise JwtError("the token's issuer is not the route's")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(a in conf["audiences"] for a in auds if isinstance(a, str)):
        raise JwtError("the token's audience is not one the route accepts")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or now > exp + LEEWAY_S:
        raise JwtError("the token has expired (or has no exp)")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and not isinstance(nbf, bool) and now + LEEWAY_S < nbf:
        raise JwtError("the token is not valid yet (nbf)")


def authorizer(claims: dict[str, Any]) -> dict[str, Any]:
    """requestContext.authorizer of a JWT route, as API Gateway fills it."""
    scope = claims.get("scope") or claims.get("scp") or ""
    scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
    flat = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in claims.items()}
    return {"jwt": {"claims": flat, "scopes": scopes or None}}
