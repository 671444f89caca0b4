"""Helpers for the S3 endpoint tests: clients from the data dir's credentials, a small SigV4
signer of our own (for requests boto3 will not build: skewed clocks, hand-made aws-chunked
bodies), and S3 XML error parsing.

Not a conftest.py: the top-level tests/conftest.py is imported as `conftest`.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
import itertools
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_counter = itertools.count()


def credentials(data_dir: Path) -> tuple[str, str]:
    """The default key written by the first start into <data_dir>/credentials."""
    cp = configparser.ConfigParser()
    cp.read(data_dir / "credentials")
    return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]


def s3_client(server, key_id: str | None = None, secret: str | None = None, **config):
    import boto3
    from botocore.config import Config

    if key_id is None:
        key_id, secret = credentials(server.data_dir)
    return boto3.client("s3", endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                      retries={"max_attempts": 1}, **config))


def new_bucket(s3, prefix: str = "bkt") -> str:
    name = f"{prefix}-{next(_counter)}"
    s3.create_bucket(Bucket=name)
    return name


def error_code(exc) -> str:
    return exc.response["Error"]["Code"]


def status(exc) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def xml_error(response: httpx.Response) -> dict[str, str]:
    """S3's <Error> document as {tag: text}."""
    root = ET.fromstring(response.content)
    assert root.tag == "Error", response.text
    return {child.tag: child.text or "" for child in root}


@dataclass
class Signed:
    """A request signed by `sign`: its headers and what aws-chunked signatures chain from."""

    headers: dict[str, str]
    signature: str
    key: bytes
    scope: str
    stamp: str


def signing_key(secret: str, date: str, region: str = REGION) -> bytes:
    k = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sign(method: str, url: str, key_id: str, secret: str, payload_hash: str,
         headers: dict[str, str] | None = None, when: datetime | None = None) -> Signed:
    """SigV4 headers for a request whose URL path and query are already encoded as sent."""
    when = when or datetime.now(UTC)
    stamp, date = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
    parts = urlsplit(url)
    h = {k.lower(): v for k, v in (headers or {}).items()}
    h.update({"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash})
    names = sorted(h)
    query = "&".join(sorted(p if "=" in p else f"{p}=" for p in parts.query.split("&") if p))
    canonical = "\n".join([method, parts.path or "/", query,
                           "".join(f"{n}:{h[n].strip()}\n" for n in names), ";".join(names),
                           payload_hash])
    scope = f"{date}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, date)
    signature = hmac_hex(key, to_sign)
    h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return Signed(h, signature, key, scope, stamp)


def signed_chunks(signed: Signed, data: bytes, chunk_size: int,
                  trailer: dict[str, str] | None = None) -> bytes:
    """An aws-chunked body with per-chunk signatures (and a signed trailer if given)."""
    out, prev = [], signed.signature
    pieces = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for piece in pieces:
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signed.stamp, signed.scope, prev,
                             EMPTY_SHA256, hashlib.sha256(piece).hexdigest()])
        prev = hmac_hex(signed.key, to_sign)
        out.append(b"%x;chunk-signature=%s\r\n%s" % (len(piece), prev.encode(), piece))
        if piece:
            out.append(b"\r\n")
    if trailer is None:
        return b"".join(out) + b"\r\n"
    lines = "".join(f"{k}:{v}\n" for k, v in trailer.items())
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", signed.stamp, signed.scope, prev,
                         hashlib.sha256(lines.encode()).hexdigest()])
    sig = hmac_hex(signed.key, to_sign)
    body = "".join(f"{k}:{v}\r\n" for k, v in trailer.items())
    return b"".join(out) + f"{body}x-amz-trailer-signature:{sig}\r\n\r\n".encode()


def aws_cli(server, config_dir: Path, check: bool = False):
    """The aws CLI against `server` with its first key and path-style addressing, nothing from
    the caller's environment; skips where the CLI is not installed. `run(*args, check=...)`."""
    exe = shutil.which("aws")
    if exe is None:
        pytest.skip("the aws CLI is not installed (pip install awscli)")
    config = config_dir / "config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(server.data_dir / "credentials"),
               AWS_CONFIG_FILE=str(config), AWS_EC2_METADATA_DISABLED="true")

    def run(*args: str, check: bool = check) -> subprocess.CompletedProcess:
        p = subprocess.run([exe, "--endpoint-url", server.url, *args], env=env,
                           capture_output=True, text=True, timeout=120)
        if check:
            assert p.returncode == 0, p.stderr
        return p
    return run
