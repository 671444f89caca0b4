"""The object client a builtin uses: the instance's bucket binding when the platform offers one
(`context.buckets`: the stored object's fd handed over the instance channel, no HTTP, no relay),
else the S3 client over HTTP (the gvisor tier, or this code run outside dayfly)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

from . import s3


def client(context: Any) -> Any:
    """An object client with `s3.Client`'s methods (the ones the builtins use)."""
    buckets = getattr(context, "buckets", None)
    return BindingClient(buckets) if buckets is not None else s3.Client.from_env()


_shared: Any = None


def shared(context: Any = None) -> Any:
    """This instance's client, made from the first context it is given (an instance's binding,
    like its environment, is the same for every invocation)."""
    global _shared
    if _shared is None:
        _shared = client(context)
    return _shared


class BindingClient:
    """`s3.Client`'s methods over a bucket binding; refusals raise `s3.S3Error` with S3's codes
    and statuses, as over HTTP. `writer` and `open` are its own: streams.py picks them up."""

    def __init__(self, buckets: Any) -> None:
        self.buckets = buckets

    @contextlib.contextmanager
    def _s3_errors(self, bucket: str, key: str = "") -> Iterator[None]:
        try:
            yield
        except self.buckets.Error as exc:
            raise s3.S3Error(exc.code, exc.status, exc.message, bucket, key) from None

    def get(self, bucket: str, key: str, start: int | None = None,
            end: int | None = None) -> Any:
        """The object as a read-only file (`size`, `headers`), or the bytes of a range."""
        with self._s3_errors(bucket, key):
            f = self.buckets.open(bucket, key)
        if start is None:
            return f
        with f:
            last = f.size - 1 if end is None else min(end, f.size - 1)
            return io.BytesIO(os.pread(f.fileno(), max(0, last - start + 1), start))

    def open(self, bucket: str, key: str) -> Any:
        """The object as a seekable, read-only file."""
        return self.get(bucket, key)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self.get(bucket, key) as f:
            return f.read()

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            with self._s3_errors(bucket, key):
                h = self.buckets.head(bucket, key)
        except s3.S3Error as exc:
            if exc.status == 404:
                return None
            raise
        headers = h.get("headers", {})
        return {"size": h["size"], "etag": h["etag"],
                "content_type": headers.get("content-type", "binary/octet-stream"),
                "metadata": {k[11:]: v for k, v in headers.items()
                             if k.startswith("x-amz-meta-")}}

    def put(self, bucket: str, key: str, data: bytes,
            content_type: str = "application/octet-stream",
            metadata: dict[str, str] | None = None) -> str:
        with self._s3_errors(bucket, key):
            return self.buckets.put(bucket, key, data, content_type, metadata)["etag"]

    def delete(self, bucket: str, key: str) -> None:
        with self._s3_errors(bucket, key):
            self.buckets.delete(bucket, key)

    def list(self, bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        with self._s3_errors(bucket, prefix):
            for o in self.buckets.list(bucket, prefix):
                yield {"key": o["key"], "size": o["size"], "etag": o["etag"]}

    def writer(self, bucket: str, key: str,
               content_type: str = "application/octet-stream") -> Any:
        """The binding's streaming writer (its parts are its own size, not S3 multipart parts:
        the object is stored as one PutObject)."""
        with self._s3_errors(bucket, key):
            return _Writer(self, self.buckets.writer(bucket, key, content_type), bucket, key)

    def close(self) -> None:
        pass


class _Writer(io.RawIOBase):
    """The binding's writer with S3 errors (what `streams.ObjectWriter` raises over HTTP)."""

    def __init__(self, client: BindingClient, inner: Any, bucket: str, key: str) -> None:
        super().__init__()
        self._client, self._inner, self.bucket, self.key = client, inner, bucket, key

    @property
    def size(self) -> int:
        return self._inner.size

    @property
    def etag(self) -> str:
        return self._inner.etag

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        with self._client._s3_errors(self.bucket, self.key):
            return self._inner.write(data)

    def close(self) -> None:
        try:
            with self._client._s3_errors(self.bucket, self.key):
                self._inner.close()
        finally:
            super().close()

    def abort(self) -> None:
        self._inner.abort()
        super().close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        pass  # the inner writer aborts itself if dropped unfinished
