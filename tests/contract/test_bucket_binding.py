"""Bucket bindings over the instance channel, on every tier that forks from a zygote: a real
object store and real function keys behind the host side, real instances in front.

Process and linux tiers get `context.buckets`; gvisor (no fds cross its boundary) and the
rootless linux tier (instances share the platform's uid, so a blob's fd could be reopened for
writing) get None.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid

import pytest
from test_sandbox_contract import TIERS, call, mkspec, write_code

from dayfly.control.function_keys import FunctionKeys
from dayfly.gateway.s3.binding import BindingService
from dayfly.platform import available_backends
from dayfly.sandbox.safe import SafeSandbox
from dayfly.stores.db import Database
from dayfly.stores.objects import ObjectStore
from dayfly.types import Limits

HANDLER = r'''
import hashlib, json, os, resource, threading, time
from dayfly.runtime import protocol

MiB = 1024 * 1024
LATE = []

def refused(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except Exception as exc:
        return [type(exc).__name__, exc.code, exc.status, exc.message]
    return None

def memfd_bytes():
    """Bytes held in this process's memfds right now."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
                total += os.fstat(int(fd)).st_size
        except OSError:
            pass
    return total

def raw(b, kind, meta_bytes, fds=()):
    """A hand-made frame, and the answer it gets."""
    frame = protocol.PREFIX.pack(kind, len(meta_bytes), 0) + meta_bytes
    with b._lock:
        with b._channel.lock:
            import socket
            sent = socket.send_fds(b._channel.sock, [frame], list(fds)) if fds else 0
            b._channel.sock.sendall(frame[sent:])
        kind, answer, _, got = protocol.read_with_fds(b._channel.sock)
    for fd in got:
        os.close(fd)
    return chr(kind), answer

def handler(event, context):
    b = context.buckets
    op = event["op"]
    if op == "none":
        return b is None
    if op == "roundtrip":
        put = b.put("both", "dir/k.txt", b"hello binding", content_type="text/plain",
                    metadata={"who": "me"})
        with b.open("both", "dir/k.txt") as f:
            got = {"data": f.read().decode(), "size": f.size, "etag": f.etag,
                   "type": f.content_type, "meta": f.metadata, "seekable": f.seekable()}
        with b.writer("both", "streamed.bin") as w:
            for i in range(10):
                w.write(bytes([i]) * 700)
        listed = [o["key"] for o in b.list("both")]
        head = b.head("both", "streamed.bin")
        src = b.get("src", "in.txt")
        b.delete("both", "dir/k.txt")
        gone = refused(b.head, "both", "dir/k.txt")
        return {"put": put, "got": got, "streamed_etag": w.etag, "streamed_size": w.size,
                "head": head, "listed": listed, "src": src.decode(), "gone": gone}
    if op == "refusals":
        return {
            "undeclared_read": refused(b.open, "secret", "x"),
            "undeclared_write": refused(b.put, "secret", "x", b"no"),
            "read_only_put": refused(b.put, "src", "x", b"no"),
            "read_only_writer": refused(b.writer, "src", "x"),
            "read_only_delete": refused(b.delete, "src", "in.txt"),
            "write_only_read": refused(b.open, "dst", "x"),
            "no_key": refused(b.open, "src", "missing"),
            "no_bucket": refused(b.put, "gone-bucket", "x", b""),
            "declared_missing_put": refused(b.put, "ghost", "x", b"body"),
            "declared_missing_writer": refused(b.writer, "ghost", "x"),
            "declared_missing_read": refused(b.open, "ghost", "x"),
            "bad_key": refused(b.put, "both", "", b""),
            "bad_header": refused(b.put, "both", "h", b"", metadata={"x": "a\r\nb"}),
        }
    if op == "large":
        size, chunk = event["mib"] * MiB, MiB
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        block = hashlib.sha256(b"dayfly").digest() * (chunk // 32)
        md5, peak_memfd = hashlib.md5(), 0
        with b.writer("both", "large.bin") as w:
            for i in range(size // chunk):
                piece = bytes([i % 256]) + block[1:]
                md5.update(piece)
                w.write(piece)
                peak_memfd = max(peak_memfd, memfd_bytes())
        back = hashlib.md5()
        with b.open("both", "large.bin") as f:
            while data := f.read(chunk):
                back.update(data)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        return {"etag": w.etag, "md5": md5.hexdigest(), "back": back.hexdigest(),
                "size": f.size, "peak_memfd": peak_memfd, "rss_grown_kib": grown}
    if op == "bad_frames":
        out = {}
        out["json"] = raw(b, protocol.BUCKET, b"{not json")
        out["not_object"] = raw(b, protocol.BUCKET, b"[1, 2]")
        out["deep"] = raw(b, protocol.BUCKET, b"[" * 30000 + b"]" * 30000)
        out["too_big"] = raw(b, protocol.BUCKET, b'{"n": 1, "pad": "' + b"x" * 70000 + b'"}')
        out["unknown_op"] = refused(b.request, {"op": "chmod", "bucket": "both"})
        out["wrong_type"] = refused(b.request, {"op": "head", "bucket": "both", "key": 5})
        out["put_without_fd"] = refused(b.request, {"op": "put", "bucket": "both", "key": "k",
                                                    "size": 1})
        r, w = os.pipe()
        out["head_with_fd"] = refused(b.request, {"op": "head", "bucket": "both", "key": "k"}, r)
        out["pipe_body"] = refused(b.request, {"op": "put", "bucket": "both", "key": "k",
                                               "size": 1}, r)
        os.close(r); os.close(w)
        fd = os.memfd_create("short")
        os.write(fd, b"abc")
        out["short_body"] = refused(b.request, {"op": "put", "bucket": "both", "key": "k",
                                                "size": 10}, fd)
        os.close(fd)
        out["fd_claimed_none"] = raw(b, protocol.BUCKET, b'{"n": 7, "op": "head", "fd": 1}')
        out["no_upload"] = refused(b.request, {"op": "close", "upload": "u999", "size": 0})
        w = b.writer("both", "liar")
        w.write(b"abc")
        os.close(w._fd)
        w._fd = -1
        out["wrong_size"] = refused(b.request, {"op": "close", "upload": w._upload, "size": 5})
        w._done = True
        w = b.writer("both", "aborted")
        b.request({"op": "abort", "upload": w._upload})
        out["write_after_abort"] = refused(w.write, b"x" * (2 << 20))
        w.abort()
        out["negative"] = refused(b.request, {"op": "list", "bucket": "both", "max_keys": 0})
        out["still_works"] = b.put("both", "after", b"ok")["size"]
        return out
    if op == "after_return":
        def late():  # asks until it is refused: only between invocations is it
            for _ in range(20_000):
                answer = refused(b.head, "src", "in.txt")
                if answer is not None:
                    LATE.append(answer)
                    return
                time.sleep(0.005)
        threading.Thread(target=late).start()
        return "returned"
    if op == "late_result":
        return LATE
    if op == "leave_writer_open":
        w = b.writer("both", "half.bin")
        w.write(b"x" * 10)
        globals()["kept"] = w  # neither closed nor aborted: the host drops it at the end
        return "left"
    if op == "exists":
        return refused(b.head, event["bucket"], event["key"])
    return "?"
'''

GRANTS = {"fn": ["src:read", "dst:write", "both:readwrite", "ghost:readwrite"]}
ROOTLESS = os.geteuid() != 0
BOUND = [t for t in TIERS if t != "gvisor" and not (t == "linux" and ROOTLESS)]
UNBOUND = ["gvisor"] + (["linux"] if ROOTLESS else [])


@contextlib.asynccontextmanager
async def started(tier: str, tmp_path):
    """A store with buckets src, dst, both and secret; an instance of `fn` on `tier`."""
    cls = available_backends().get(tier)
    if cls is None:
        pytest.skip(f"isolation tier {tier!r} is not available on this machine")
    db = Database(tmp_path / "objects.db")
    store = ObjectStore(db, tmp_path / "store", "us-east-1")
    events: list[dict] = []

    async def heard(record: dict) -> None:
        events.append(record)
    store.on_event = heard
    for bucket in ("src", "dst", "both", "secret"):
        await store.create_bucket(bucket)

    async def body(data: bytes):
        yield data
    await store.put_object("src", "in.txt", body(b"input"), headers={})
    keys = FunctionKeys(tmp_path, lambda name, version: GRANTS.get(name))
    backend = cls(tmp_path / "data")
    backend.objects = BindingService(store, keys)
    sandbox = SafeSandbox(backend)
    sandbox.tier = tier  # type: ignore[attr-defined]
    code = write_code(tmp_path / "code", {"handler.py": HANDLER})
    spec = mkspec(sandbox, code, buckets=tuple(GRANTS["fn"]),
                  limits=Limits(memory_mb=256, timeout_s=30, max_output_bytes=1024 * 1024))
    h = await sandbox.start(spec, uuid.uuid4().hex[:8])
    try:
        yield sandbox, h, store, events, keys
    finally:
        await sandbox.stop(h)
        await sandbox.close()
        db.close()


@pytest.fixture(params=BOUND)
async def env(request, tmp_path):
    async with started(request.param, tmp_path) as e:
        yield e


@pytest.fixture(params=UNBOUND)
async def unbound_env(request, tmp_path):
    async with started(request.param, tmp_path) as e:
        yield e


async def run(env, event, timeout=30.0):
    sandbox, h = env[0], env[1]
    r = await call(sandbox, h, event, timeout)
    assert r.ok, r.payload
    return json.loads(r.payload)


async def test_read_write_list_delete_through_the_binding(env):
    store, events, keys = env[2], env[3], env[4]
    out = await run(env, {"op": "roundtrip"})
    md5 = hashlib.md5(b"hello binding").hexdigest()
    assert out["put"] == {"etag": md5, "size": 13}
    assert out["got"] == {"data": "hello binding", "size": 13, "etag": md5, "type": "text/plain",
                          "meta": {"who": "me"}, "seekable": True}
    streamed = b"".join(bytes([i]) * 700 for i in range(10))
    assert out["streamed_etag"] == hashlib.md5(streamed).hexdigest()
    assert out["streamed_size"] == out["head"]["size"] == 7000
    assert out["listed"] == ["dir/k.txt", "streamed.bin"]
    assert out["src"] == "input"
    assert out["gone"][1:3] == ["NoSuchKey", 404]
    # the store holds what a PutObject would have stored, and heard the same events
    info = await store.get_object("both", "streamed.bin")
    assert (info.etag, info.size) == (out["streamed_etag"], 7000)
    key_id = keys.credentials("fn", "$LATEST")[0]
    mine = [(e["eventName"], e["s3"]["object"]["key"]) for e in events
            if e["userIdentity"]["principalId"] == key_id]
    assert mine == [("ObjectCreated:Put", "dir/k.txt"), ("ObjectCreated:Put", "streamed.bin"),
                    ("ObjectRemoved:Delete", "dir/k.txt")]


async def test_grants_are_the_declared_buckets_and_modes(env):
    out = await run(env, {"op": "refusals"})
    for case in ("undeclared_read", "undeclared_write", "read_only_put", "read_only_writer",
                 "read_only_delete", "write_only_read", "no_bucket"):
        assert out[case][:3] == ["BucketError", "AccessDenied", 403], (case, out[case])
    assert "may not write bucket src" in out["read_only_put"][3]
    assert "may not read bucket secret" in out["undeclared_read"][3]
    assert out["no_key"][1:3] == ["NoSuchKey", 404]
    for case in ("declared_missing_put", "declared_missing_writer", "declared_missing_read"):
        assert out[case][1:3] == ["NoSuchBucket", 404], (case, out[case])
    store = env[2]
    assert not list(store.blobs.tmp.iterdir())  # nothing of the refused bodies stays
    assert sum(len(list(d.iterdir())) for d in store.blobs.root.iterdir()
               if d != store.blobs.tmp) == 1  # the one object there is: src/in.txt
    assert out["bad_key"][1] == "InvalidArgument"
    assert out["bad_header"][1] == "InvalidArgument"
    assert await env[2].list_objects("secret") and not (await env[2].list_objects("secret")).rows


async def test_a_changed_declaration_counts_at_once(env):
    assert await run(env, {"op": "exists", "bucket": "src", "key": "in.txt"}) is None
    GRANTS["fn"] = ["both:readwrite"]  # what the registry would answer after a redeploy
    try:
        refusal = await run(env, {"op": "exists", "bucket": "src", "key": "in.txt"})
        assert refusal[1] == "AccessDenied"
    finally:
        GRANTS["fn"] = ["src:read", "dst:write", "both:readwrite", "ghost:readwrite"]


async def test_a_64_mib_object_streams_both_ways_without_being_held(env):
    out = await run(env, {"op": "large", "mib": 64}, timeout=60)
    assert out["etag"] == out["md5"] == out["back"] and out["size"] == 64 * 1024 * 1024
    assert out["peak_memfd"] == 0  # streamed through a pipe: nothing held in the instance
    assert out["rss_grown_kib"] < 24 * 1024, out


async def test_bad_frames_get_errors_and_the_instance_goes_on(env):
    out = await run(env, {"op": "bad_frames"})
    assert out["json"][0] == "A" and out["json"][1]["error"]["code"] == "InvalidRequest"
    assert out["not_object"][1]["error"]["code"] == "InvalidRequest"
    assert out["deep"][1]["error"]["code"] == "InvalidRequest"
    assert "at most 65536 bytes" in out["too_big"][1]["error"]["message"]
    assert out["unknown_op"][1] == "InvalidRequest" and "chmod" in out["unknown_op"][3]
    assert out["wrong_type"][1] == "InvalidArgument" and "'key'" in out["wrong_type"][3]
    assert "travels as an fd" in out["put_without_fd"][3]
    assert "carries no fd" in out["head_with_fd"][3]
    assert out["pipe_body"][1] == "InvalidArgument" and "regular file" in out["pipe_body"][3]
    assert out["short_body"][1] == "IncompleteBody"
    assert out["fd_claimed_none"][1]["error"]["code"] == "InvalidRequest"
    assert out["fd_claimed_none"][1]["n"] == 7
    assert out["no_upload"][1:3] == ["NoSuchUpload", 404]
    assert out["wrong_size"][1] == "IncompleteBody" and "carried 3 bytes" in out["wrong_size"][3]
    assert "stopped reading" in out["write_after_abort"][3]
    assert out["negative"][1] == "InvalidArgument"
    assert out["still_works"] == 2
    assert await run(env, {"op": "exists", "bucket": "src", "key": "in.txt"}) is None


async def test_requests_after_the_handler_returned_are_refused(env):
    # An idle linux instance is frozen, so its threads only run again in its next invocation,
    # where a request is allowed; the host's refusal is what is tested, so freezing is off.
    env[0].backend.freeze_idle = False
    assert await run(env, {"op": "after_return"}) == "returned"
    late: list = []
    for _ in range(600):  # until the thread met an idle moment (each call is an invocation)
        late = await run(env, {"op": "late_result"})
        if late:
            break
        await asyncio.sleep(0.05)
    assert late, "the thread was never refused"
    assert late[0][1] == "InvalidRequest" and "only while an invocation runs" in late[0][3]
    assert await run(env, {"op": "exists", "bucket": "src", "key": "in.txt"}) is None


async def test_an_upload_left_open_is_dropped_with_its_invocation(env):
    store = env[2]
    assert await run(env, {"op": "leave_writer_open"}) == "left"
    await asyncio.sleep(0.2)
    assert not (await store.list_objects("both", prefix="half")).rows
    assert list((store.blobs.tmp).iterdir()) == []  # its temp blob is gone too


async def test_tiers_that_must_not_pass_fds_offer_no_binding(unbound_env):
    assert await run(unbound_env, {"op": "none"}) is True
