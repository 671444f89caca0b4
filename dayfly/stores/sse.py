"""Server-side encryption of object content at rest: AES-256 in CTR mode.

SSE-S3 encrypts with the node's key (derived from its master key, or the cluster key, so every
node of a cluster reads what another wrote); SSE-C with the customer's key, which is never
stored: the object keeps only an HMAC of it under the node's key, to tell a right key from a
wrong one, and the key's MD5 (which S3 returns). Each object has its own random 16-byte
initial counter, so CTR's keystream is never reused across objects of one key, and any byte
range is decrypted by starting the counter at its block.

What is hashed (ETag, checksums) is the plaintext; what reaches the blob file is ciphertext.
The object's encryption is in its headers: S3's public ones, and `x-dayfly-sse-*` ones that
object_headers never returns and no request can set (kept_headers keeps x-amz-meta-* and the
standard ones only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .s3errors import S3Error

SSE = "x-amz-server-side-encryption"
CUSTOMER_ALG = "x-amz-server-side-encryption-customer-algorithm"
CUSTOMER_MD5 = "x-amz-server-side-encryption-customer-key-md5"
NONCE = "x-dayfly-sse-nonce"
CHECK = "x-dayfly-sse-check"  # SSE-C: HMAC of the customer's key under the node's key
PRIVATE = "x-dayfly-"


@dataclass(frozen=True, slots=True)
class Sse:
    """How one object is (to be) encrypted: 'AES256' (SSE-S3) or 'SSE-C', and the data key."""

    kind: str
    key: bytes
    customer_md5: str = ""  # SSE-C: base64 MD5 of the customer's key

    def headers(self, nonce: bytes, node_key: bytes) -> dict[str, str]:
        """The headers a new object stores for this encryption."""
        out = {NONCE: base64.b64encode(nonce).decode()}
        if self.kind == "AES256":
            out[SSE] = "AES256"
        else:
            out.update({CUSTOMER_ALG: "AES256", CUSTOMER_MD5: self.customer_md5,
                        CHECK: check_value(node_key, self.key)})
        return out


def check_value(node_key: bytes, customer_key: bytes) -> str:
    return base64.b64encode(hmac.digest(node_key, b"sse-c:" + customer_key, "sha256")).decode()


def encrypted(headers: dict[str, str]) -> bool:
    return NONCE in headers


def new_nonce() -> bytes:
    return secrets.token_bytes(16)


def _cipher(key: bytes, nonce: bytes, offset: int):
    counter = (int.from_bytes(nonce, "big") + offset // 16) % (1 << 128)
    ctx = Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
    if offset % 16:
        ctx.update(bytes(offset % 16))
    return ctx


def encryptor(key: bytes, nonce: bytes) -> Callable[[bytes | bytearray | memoryview], bytes]:
    """A function encrypting a stream piece by piece, from offset 0."""
    return _cipher(key, nonce, 0).update


async def decrypting(chunks: AsyncIterator[bytes], key: bytes, nonce: bytes,
                     offset: int) -> AsyncIterator[bytes]:
    """Ciphertext chunks starting at byte `offset` of the object, decrypted."""
    ctx = _cipher(key, nonce, offset)
    async for chunk in chunks:
        yield ctx.update(chunk)


def object_key(headers: dict[str, str], node: bytes, customer: Sse | None) -> bytes | None:
    """The data key of a stored object (None: not encrypted), given the request's SSE-C key;
    raises S3's errors for a missing, unexpected or wrong customer key."""
    if CHECK in headers:
        if customer is None or customer.kind != "SSE-C":
            raise S3Error("InvalidRequest", "The object was stored using a form of Server Side "
                          "Encryption. The correct parameters must be provided to retrieve the "
                          "object.")
        if not hmac.compare_digest(check_value(node, customer.key), headers[CHECK]):
            raise S3Error("AccessDenied", "Access Denied (the SSE-C key does not match the "
                          "object's)")
        return customer.key
    if customer is not None:
        raise S3Error("InvalidRequest", "The encryption parameters are not applicable to this "
                      "object.")
    return node if NONCE in headers else None


def nonce_of(headers: dict[str, str]) -> bytes:
    return base64.b64decode(headers[NONCE])


def customer_key(b64_key: str, b64_md5: str | None, prefix: str) -> Sse:
    """SSE-C's key from its headers, checked against its MD5."""
    try:
        key = base64.b64decode(b64_key, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise S3Error("InvalidArgument", "The secret key was invalid for the specified "
                      "algorithm.", ArgumentName=prefix + "key")
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    if b64_md5 is None or b64_md5.strip() != md5:
        raise S3Error("InvalidArgument", "The calculated MD5 hash of the key did not match the "
                      "hash that was provided.", ArgumentName=prefix + "key-MD5")
    return Sse("SSE-C", key, md5)
