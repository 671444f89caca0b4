"""A small S3 client (SigV4, keep-alive http.client connections through the egress relay) that
uses the credentials and endpoint `buckets` access puts in a function's environment."""

from __future__ import annotations

import http.client
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from . import net, sigv4

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    """An S3 error answer: its code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str, bucket: str = "", key: str = ""):
        where = f" ({bucket}/{key})" if key else (f" ({bucket})" if bucket else "")
        super().__init__(f"S3 {code}{where}: {message}")
        self.code, self.status = code, status


class Body:
    """A streaming GET body; the connection goes back to the pool once it is read to the end."""

    def __init__(self, client: Client, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self._client, self._conn, self._resp = client, conn, resp
        self.size = int(resp.getheader("content-length") or 0)
        self.headers = {k.lower(): v for k, v in resp.getheaders()}

    def read(self, n: int = -1) -> bytes:
        data = self._resp.read() if n is None or n < 0 else self._resp.read(n)
        if self._resp.isclosed():
            self.close()
        return data

    def readinto(self, buf: Any) -> int:
        n = self._resp.readinto(buf)
        if self._resp.isclosed():
            self.close()
        return n

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._conn is not None:
            self._client._release(self._conn, self._resp)
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """S3 operations on one endpoint; safe to share between threads (a connection pool)."""

    def __init__(self, endpoint: str, key_id: str, secret: str, region: str = "us-east-1",
                 session_token: str | None = None, timeout: float = 60.0) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"S3 endpoint must be an http(s) URL, got {endpoint!r}")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.netloc = parts.netloc
        self.key_id, self.secret, self.region = key_id, secret, region
        self.session_token, self.timeout = session_token, timeout
        self._pool: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()  # guards _pool

    @classmethod
    def from_env(cls) -> Client:
        """The endpoint and keys a function with `buckets` access finds in its environment."""
        env = os.environ
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if not endpoint or not env.get("AWS_ACCESS_KEY_ID"):
            raise RuntimeError("no S3 endpoint or credentials in the environment: the function "
                               "needs `buckets` access (dayfly.toml) to reach its buckets")
        return cls(endpoint, env["AWS_ACCESS_KEY_ID"], env.get("AWS_SECRET_ACCESS_KEY", ""),
                   env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                   env.get("AWS_SESSION_TOKEN"))

    # -- connections ---------------------------------------------------------------------------

    def _connection(self, pooled: bool = True) -> http.client.HTTPConnection:
        with self._lock:
            if self._pool and pooled:
                return self._pool.pop()
        cls = net.HTTPSConnection if self.scheme == "https" else net.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def _release(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.isclosed() and not resp.will_close:
            with self._lock:
                self._pool.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()

    # -- requests ------------------------------------------------------------------------------

    def request(self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None,
                ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send a signed request; the caller reads the response. S3 errors raise S3Error."""
        path = "/" + bucket + ("/" + sigv4.encode_key(key) if key else "")
        qs = sigv4.canonical_query(query)
        for attempt in (1, 2):  # a pooled keep-alive connection may have been closed meanwhile
            signed = sigv4.sign(method, self.netloc, path, qs, headers or {}, sigv4.UNSIGNED,
                                self.key_id, self.secret, self.region, self.session_token)
            if body is not None:
                signed["content-length"] = str(len(body))
            # the retry takes a new connection: the other pooled ones idled as long as this one
            conn = self._connection(pooled=attempt == 1)
            try:
                conn.request(method, path + ("?" + qs if qs else ""), body=body, headers=signed)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            if resp.status >= 300 and resp.status != 304:
                data = resp.read()
                self._release(conn, resp)
                raise _error(resp.status, data, bucket, key)
            return conn, resp
        raise AssertionError("unreachable")

    def _simple(self, method: str, bucket: str, key: str = "", **kw: Any) -> tuple[bytes, dict]:
        conn, resp = self.request(method, bucket, key, **kw)
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        self._release(conn, resp)
        return data, headers

    def get(self, bucket: str, key: str, start: int | None = None, end: int | None = None) -> Body:
        """A streaming body (bytes start..end inclusive when given)."""
        headers = {}
        if start is not None:
            headers["range"] = f"bytes={start}-{'' if end is None else end}"
        conn, resp = self.request("GET", bucket, key, headers=headers)
        return Body(self, conn, resp)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self.get(bucket, key) as body:
            return body.read()

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """{size, etag, content_type, metadata}, or None if there is no such object."""
        try:
            _, h = self._simple("HEAD", bucket, key)
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        meta = {k[len("x-amz-meta-"):]: v for k, v in h.items() if k.startswith("x-amz-meta-")}
        return {"size": int(h.get("content-length") or 0), "etag": h.get("etag", "").strip('"'),
                "content_type": h.get("content-type", ""), "metadata": meta}

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> str:
        """Store an object; its ETag."""
        headers = {"content-type": content_type}
        headers.update({f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()})
        _, h = self._simple("PUT", bucket, key, headers=headers, body=data)
        return h.get("etag", "").strip('"')

    def delete(self, bucket: str, key: str) -> None:
        self._simple("DELETE", bucket, key)

    def list(self, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        """Every object under a prefix: {key, size, etag}, in key order (ListObjectsV2 pages)."""
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            data, _ = self._simple("GET", bucket, query=query)
            root = ET.fromstring(data)
            for c in root.iter(f"{_NS}Contents"):
                yield {"key": c.findtext(f"{_NS}Key") or "",
                       "size": int(c.findtext(f"{_NS}Size") or 0),
                       "etag": (c.findtext(f"{_NS}ETag") or "").strip('"')}
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    # -- multipart -----------------------------------------------------------------------------

    def create_multipart(self, bucket: str, key: str,
                         content_type: str = "application/octet-stream") -> str:
        data, _ = self._simple("POST", bucket, key, query={"uploads": ""},
                               headers={"content-type": content_type})
        return ET.fromstring(data).findtext(f"{_NS}UploadId") or ""

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
        _, h = self._simple("PUT", bucket, key, body=data,
                            query={"partNumber": str(number), "uploadId": upload_id})
        return h.get("etag", "")

    def complete_multipart(self, bucket: str, key: str, upload_id: str,
                           etags: Sequence[str]) -> str:
        parts = "".join(f"<Part><PartNumber>{i}</PartNumber><ETag>{e}</ETag></Part>"
                        for i, e in enumerate(etags, 1))
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        data, _ = self._simple("POST", bucket, key, query={"uploadId": upload_id}, body=body)
        root = ET.fromstring(data)
        if root.tag == "Error":  # S3 may report a failed completion inside a 200
            raise S3Error(root.findtext("Code") or "InternalError", 200,
                          root.findtext("Message") or "", bucket, key)
        return (root.findtext(f"{_NS}ETag") or "").strip('"')

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self._simple("DELETE", bucket, key, query={"uploadId": upload_id})


def _error(status: int, data: bytes, bucket: str, key: str) -> S3Error:
    code, message = f"HTTP{status}", data[:200].decode(errors="replace")
    try:
        root = ET.fromstring(data)
        code = root.findtext("Code") or code
        message = root.findtext("Message") or message
    except ET.ParseError:
        if status == 404:
            code = "NoSuchKey"
    return S3Error(code, status, message, bucket, key)
