"""The object store in-process: the event hook hears each change once, after the commit, in the
shape of an S3 event notification record; failed writes emit nothing and leave no file."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_plus

import pytest
from pg_helpers import BACKENDS, open_database

from dayfly.stores.blobs import Blob
from dayfly.stores.listing import successor
from dayfly.stores.objects import ObjectStore, Origin
from dayfly.stores.s3errors import S3Error


async def body(*chunks: bytes):
    for c in chunks:
        yield c


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    """An object store over SQLite and over PostgreSQL."""
    with open_database(request.param, tmp_path) as db:
        yield ObjectStore(db, tmp_path, "eu-west-1")


def blob_files(store: ObjectStore) -> list[str]:
    return sorted(p.name for p in store.blobs.root.glob("??/*"))


async def test_event_records(store):
    records: list[dict] = []

    async def hook(record: dict) -> None:
        # called after the commit: the change is visible to whoever handles the event
        key = unquote_plus(record["s3"]["object"]["key"])
        if record["eventName"].startswith("ObjectCreated"):
            await store.get_object(record["s3"]["bucket"]["name"], key)
        records.append(record)

    store.on_event = hook
    await store.create_bucket("events")
    origin = Origin("REQ1", "10.0.0.7", "DFKEY")
    info = await store.put_object("events", "dir/a b+c.txt", body(b"hello ", b"world"),
                                  headers={}, origin=origin)
    await store.copy_object(info, "events", "copy", None)
    parts = [b"x" * (5 * 1024 * 1024), b"tail"]
    mp = store.multipart
    uid = await mp.create("events", "multi", {}, None)
    got = [await mp.upload_part("events", "multi", uid, n, body(p)) for n, p in
           enumerate(parts, 1)]
    await mp.complete("events", "multi", uid, [(p.number, p.etag, {}) for p in got])
    await store.delete_objects("events", ["copy", "never-there", "multi"])

    assert [r["eventName"] for r in records] == [
        "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete", "ObjectRemoved:Delete"]
    first = records[0]
    assert first["eventVersion"] == "2.1" and first["eventSource"] == "aws:s3"
    assert first["awsRegion"] == "eu-west-1" and first["eventTime"].endswith("Z")
    assert first["userIdentity"] == {"principalId": "DFKEY"}
    assert first["requestParameters"] == {"sourceIPAddress": "10.0.0.7"}
    assert first["responseElements"]["x-amz-request-id"] == "REQ1"
    assert first["s3"]["bucket"] == {"name": "events", "ownerIdentity": {"principalId": "DFKEY"},
                                     "arn": "arn:aws:s3:::events"}
    obj = first["s3"]["object"]
    assert obj["key"] == "dir/a+b%2Bc.txt"  # URL-encoded the way S3 does it
    assert obj["size"] == 11 and obj["eTag"] == hashlib.md5(b"hello world").hexdigest()
    multi = records[2]["s3"]["object"]
    assert multi["eTag"].endswith("-2") and multi["size"] == len(b"".join(parts))
    assert [r["s3"]["object"]["key"] for r in records[3:]] == ["copy", "multi"]
    assert "size" not in records[3]["s3"]["object"]
    seqs = [r["s3"]["object"]["sequencer"] for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(len(s) == len(seqs[0]) and int(s, 16) for s in seqs)


async def test_failures_emit_nothing_and_leave_no_files(store):
    records: list[dict] = []

    async def hook(record: dict) -> None:
        records.append(record)
    store.on_event = hook
    await store.create_bucket("fails")

    def refuse(blob: Blob):
        raise S3Error("BadDigest", "no")
    with pytest.raises(S3Error) as exc:
        await store.put_object("fails", "k", body(b"data"), headers={}, verify=refuse)
    assert exc.value.code == "BadDigest"
    with pytest.raises(S3Error) as exc:
        await store.put_object("nobucket", "k", body(b"data"), headers={})
    assert exc.value.code == "NoSuchBucket"

    async def broken():
        yield b"part of it"
        raise ConnectionResetError("client went away")
    with pytest.raises(ConnectionResetError):
        await store.put_object("fails", "k", broken(), headers={})
    with pytest.raises(S3Error) as exc:
        await store.put_object("fails", "k" * 1025, body(b"x"), headers={})
    assert exc.value.code == "KeyTooLongError"
    await store.delete_objects("fails", ["k"])  # nothing there: no event
    assert records == [] and blob_files(store) == []
    assert list(store.blobs.tmp.iterdir()) == []


async def test_overwrite_and_delete_remove_old_content(store):
    await store.create_bucket("files")
    await store.put_object("files", "k", body(b"one"), headers={})
    await store.put_object("files", "k", body(b"two"), headers={})
    await store.removals()  # (the replaced content goes after the answer)
    assert len(blob_files(store)) == 1
    await store.delete_objects("files", ["k"])
    await store.removals()
    assert blob_files(store) == []


def test_successor():
    assert successor("a/") == "a0"
    assert successor("a\U0010ffff") == "b"
    assert successor("x\ud7ff") == "x\ue000"
    assert successor("") is None
