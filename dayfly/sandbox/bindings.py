"""Bucket bindings, host side: the object requests an instance sends over its channel.

An instance of a function that declares `buckets` may send BUCKET frames while it runs an
invocation (docs/runtime-protocol.md). Each is checked here — its shape, its size, the one fd
it must or must not carry — and handed to the node's object service (`ObjectService`,
implemented by gateway/s3/binding.py), which grants exactly what the function's S3 key would.
Requests of one instance are answered in order, one at a time; a bad one gets an error answer
naming what is wrong, and the instance and the platform go on. Nothing here blocks the event
loop: the service does its file work in threads.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from typing import Any, Protocol

from ..background import spawn
from ..errors import DayflyError
from ..runtime import protocol
from ..types import FunctionSpec
from .channel import InstanceChannel

log = logging.getLogger("dayfly.bindings")

MAX_REQUEST = 64 * 1024  # bytes of a request's meta (a delete of 1000 long keys fits)
MAX_QUEUED = 4  # requests of one instance waiting for their turn; a well-behaved one has one
MAX_UPLOADS = 8  # streamed puts one invocation may have open at once


class Upload(Protocol):
    """A streamed put: the instance writes into a pipe (`fd`, its write end, is the instance's
    to take), the host stores what arrives; then finished (stored) or aborted."""

    fd: int

    async def finish(self, size: int) -> dict[str, Any]:
        """Store the object once `size` bytes have arrived; {etag, size}."""

    async def abort(self) -> None:
        """Drop what was written; never raises."""


class ObjectService(Protocol):
    """The node's objects as a function may reach them. Methods raise DayflyError (S3's codes)
    for refusals; those taking an fd close it."""

    async def head(self, fn: FunctionSpec, bucket: str, key: str) -> dict[str, Any]: ...
    async def get(self, fn: FunctionSpec, bucket: str, key: str) -> tuple[dict[str, Any], int]:
        """The object's metadata and a read-only fd of its content (the caller's to close)."""
    async def put(self, fn: FunctionSpec, bucket: str, key: str, fd: int, size: int,
                  headers: dict[str, str]) -> dict[str, Any]: ...
    async def create(self, fn: FunctionSpec, bucket: str, key: str,
                     headers: dict[str, str]) -> Upload:
        """A streamed put, reading from a new pipe whose write end is `Upload.fd`."""
    async def delete(self, fn: FunctionSpec, bucket: str, keys: list[str]) -> dict[str, Any]: ...
    async def list(self, fn: FunctionSpec, bucket: str, prefix: str, start: str,
                   max_keys: int) -> dict[str, Any]: ...


class RequestError(DayflyError):
    """A request the binding refuses before it reaches the service."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


# op -> (fields and their types, whether it carries an fd)
OPS: dict[str, tuple[dict[str, type], bool]] = {
    "head": ({"bucket": str, "key": str}, False),
    "get": ({"bucket": str, "key": str}, False),
    "put": ({"bucket": str, "key": str, "size": int, "headers": dict}, True),
    "open": ({"bucket": str, "key": str, "headers": dict}, False),
    "close": ({"upload": str, "size": int}, False),
    "abort": ({"upload": str}, False),
    "delete": ({"bucket": str, "keys": list}, False),
    "list": ({"bucket": str, "prefix": str, "start": str, "max_keys": int}, False),
}
OPTIONAL = {"headers": {}, "prefix": "", "start": "", "max_keys": 1000}


def _check(meta: object) -> tuple[str, dict[str, Any]]:
    """(op, its arguments) of a well-formed request; RequestError naming what is wrong."""
    if not isinstance(meta, dict):
        raise RequestError("InvalidRequest", "a bucket request is a JSON object")
    op = meta.get("op")
    if op not in OPS:
        raise RequestError("InvalidRequest", f"unknown bucket request op {str(op)[:40]!r} "
                           f"(known: {', '.join(OPS)})")
    fields, _ = OPS[op]
    args: dict[str, Any] = {}
    for name, kind in fields.items():
        value = meta.get(name, OPTIONAL.get(name))
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RequestError("InvalidArgument", f"{op}: {name!r} must be a "
                               f"{'JSON ' + kind.__name__.replace('dict', 'object')}")
        args[name] = value
    if "size" in args and args["size"] < 0:
        raise RequestError("InvalidArgument", f"{op}: 'size' must be >= 0")
    if "max_keys" in args and not 1 <= args["max_keys"] <= 1000:
        raise RequestError("InvalidArgument", "list: 'max_keys' must be between 1 and 1000")
    if op == "delete" and not (1 <= len(args["keys"]) <= 1000
                               and all(isinstance(k, str) for k in args["keys"])):
        raise RequestError("InvalidArgument", "delete: 'keys' must be 1 to 1000 strings")
    if "headers" in args and not all(isinstance(k, str) and isinstance(v, str)
                                     for k, v in args["headers"].items()):
        raise RequestError("InvalidArgument", f"{op}: 'headers' must map strings to strings")
    return op, args


class Binding:
    """One instance's bucket requests. `service` None refuses every request with `why`."""

    def __init__(self, chan: InstanceChannel, spec: FunctionSpec,
                 service: ObjectService | None, why: str = "") -> None:
        self.chan, self.spec, self.service, self.why = chan, spec, service, why
        self.active = False  # an invocation is running
        self.queue: deque[tuple[Any, dict | None, int]] = deque()
        self.working = False
        self.uploads: dict[str, Upload] = {}
        self._ids = 0
        chan.on_bucket = self.on_frame

    def begin(self) -> None:
        self.active = True

    def end(self) -> None:
        """The invocation is over: later requests are refused, open uploads dropped."""
        self.active = False
        if self.uploads:  # (every invocation passes here: nothing to allocate when empty)
            uploads, self.uploads = list(self.uploads.values()), {}
            for upload in uploads:
                spawn(upload.abort())

    def on_frame(self, raw: bytes) -> None:
        """A BUCKET frame (on the event loop): parse it, claim its fd, queue it."""
        n, meta, fd = None, None, -1
        try:
            if len(raw) > MAX_REQUEST:
                raise RequestError("InvalidRequest", f"a bucket request may have at most "
                                   f"{MAX_REQUEST} bytes of meta, got {len(raw)}")
            meta = json.loads(raw) if raw else {}
            n = meta.get("n") if isinstance(meta, dict) else None
            if isinstance(meta, dict) and meta.get("fd"):
                fd = self.chan.take_fd()
                if fd < 0:
                    raise RequestError("InvalidRequest", "the request says it carries an fd, "
                                       "but none arrived with it")
        except (ValueError, RecursionError, RequestError) as exc:  # (nesting too deep to parse)
            error = exc if isinstance(exc, RequestError) else RequestError(
                "InvalidRequest", f"a bucket request is a JSON object: {exc}")
            self._answer(n, _error(error))
            return
        if len(self.queue) >= MAX_QUEUED:
            if fd >= 0:
                os.close(fd)
            self._answer(n, _error(RequestError("SlowDown", "too many bucket requests at once: "
                                                "wait for each answer", 503)))
            return
        self.queue.append((n, meta, fd))
        if not self.working:
            self.working = True
            spawn(self._work())

    async def _work(self) -> None:
        try:
            while self.queue:
                n, meta, fd = self.queue.popleft()
                answer, out = await self._one(meta, fd)
                self._answer(n, answer, out)
        finally:
            self.working = False

    async def _one(self, meta: Any, fd: int) -> tuple[dict, int]:
        """The answer to one request and the fd it carries (-1 for none)."""
        try:
            op, args = _check(meta)
            if self.service is None:
                raise RequestError("InvalidRequest", self.why)
            if not self.active:
                raise RequestError("InvalidRequest", "bucket requests are answered only while "
                                   "an invocation runs")
            if OPS[op][1] != (fd >= 0):
                raise RequestError("InvalidRequest", f"{op}: " + (
                    "the body travels as an fd with the request" if fd < 0 else
                    "this request carries no fd"))
            consumed, fd = fd, -1  # the service closes it from here on
            return await self._call(op, args, consumed)
        except DayflyError as exc:
            return _error(exc), -1
        except Exception as exc:
            log.exception("bucket request of %s failed", self.spec.name)
            return _error(RequestError("InternalError", f"internal error: {exc}", 500)), -1
        finally:
            if fd >= 0:
                os.close(fd)

    async def _call(self, op: str, a: dict[str, Any], fd: int) -> tuple[dict, int]:
        s, fn = self.service, self.spec
        assert s is not None
        if op == "head":
            return await s.head(fn, a["bucket"], a["key"]), -1
        if op == "get":
            return await s.get(fn, a["bucket"], a["key"])
        if op == "put":
            return await s.put(fn, a["bucket"], a["key"], fd, a["size"], a["headers"]), -1
        if op == "open":
            if len(self.uploads) >= MAX_UPLOADS:
                raise RequestError("SlowDown", f"at most {MAX_UPLOADS} streamed puts may be "
                                   "open at once", 503)
            self._ids += 1
            upload_id = f"u{self._ids}"
            created = self.uploads[upload_id] = await s.create(fn, a["bucket"], a["key"],
                                                               a["headers"])
            fd, created.fd = created.fd, -1  # the pipe's write end goes to the instance
            return {"upload": upload_id}, fd
        if op == "delete":
            return await s.delete(fn, a["bucket"], a["keys"]), -1
        if op == "list":
            return await s.list(fn, a["bucket"], a["prefix"], a["start"], a["max_keys"]), -1
        upload = self.uploads.pop(a["upload"], None)
        if upload is None:
            raise RequestError("NoSuchUpload", f"{op}: no open streamed put {a['upload'][:40]!r}"
                               " (finished, aborted, or from an earlier invocation)", 404)
        if op == "abort":
            await upload.abort()
            return {}, -1
        try:
            return await upload.finish(a["size"]), -1
        except BaseException:
            spawn(upload.abort())
            raise

    def _answer(self, n: Any, answer: dict, fd: int = -1) -> None:
        self.chan.send(protocol.encode(protocol.ANSWER, {**answer, "n": n}),
                       [fd] if fd >= 0 else ())


def _error(exc: DayflyError) -> dict:
    return {"error": {"code": exc.code, "message": exc.message, "status": exc.status}}
