"""Bucket versioning through boto3 and the aws CLI against a real server, and the store's
version bookkeeping and events in-process over SQLite and PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest
from botocore.exceptions import ClientError
from pg_helpers import BACKENDS, open_database
from s3_helpers import aws_cli, error_code, new_bucket, s3_client, status

from dayfly.stores.objects import ObjectStore
from dayfly.stores.s3errors import S3Error


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture
def vbucket(s3):
    name = new_bucket(s3, "ver")
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def versions(s3, bucket, **kw):
    out = s3.list_object_versions(Bucket=bucket, **kw)
    return ([(v["Key"], v["VersionId"], v["IsLatest"]) for v in out.get("Versions", [])],
            [(m["Key"], m["VersionId"], m["IsLatest"]) for m in out.get("DeleteMarkers", [])])


def test_versioning_state(s3):
    bucket = new_bucket(s3, "ver")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Off"})
    assert error_code(exc.value) == "MalformedXML"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_versioning(Bucket="no-such-bucket-here")
    assert error_code(exc.value) == "NoSuchBucket"


def test_versions_kept_and_read_back(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"v{i}".encode())["VersionId"]
           for i in range(3)]
    assert len(set(ids)) == 3 and "null" not in ids
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"v2"
    for i, vid in enumerate(ids):
        got = s3.get_object(Bucket=vbucket, Key="k", VersionId=vid)
        assert (got["Body"].read(), got["VersionId"]) == (f"v{i}".encode(), vid)
        assert s3.head_object(Bucket=vbucket, Key="k", VersionId=vid)["ContentLength"] == 2
    vs, markers = versions(s3, vbucket)
    assert vs == [("k", ids[2], True), ("k", ids[1], False), ("k", ids[0], False)]
    assert markers == []
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="0" * 32)
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchVersion", 404)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId="not-a-version")
    assert (error_code(exc.value), status(exc.value)) == ("InvalidArgument", 400)

    # deleting the current version by id makes the previous one current
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[2])
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"v1"
    # deleting an old version leaves the current one alone
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[0])
    assert versions(s3, vbucket)[0] == [("k", ids[1], True)]


def test_delete_markers(s3, vbucket):
    first = s3.put_object(Bucket=vbucket, Key="doc", Body=b"one")["VersionId"]
    gone = s3.delete_object(Bucket=vbucket, Key="doc")
    assert gone["DeleteMarker"] is True and gone["VersionId"] not in ("null", first)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="doc")
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchKey", 404)
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == gone["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=vbucket, Key="doc")
    assert status(exc.value) == 404
    with pytest.raises(ClientError) as exc:  # a marker by its id: 405, not an object
        s3.get_object(Bucket=vbucket, Key="doc", VersionId=gone["VersionId"])
    assert status(exc.value) == 405
    # hidden from listings, kept in the versions listing; the old version still readable
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    assert versions(s3, vbucket) == ([("doc", first, False)],
                                     [("doc", gone["VersionId"], True)])
    assert s3.get_object(Bucket=vbucket, Key="doc", VersionId=first)["Body"].read() == b"one"
    # a versioned bucket with only old versions is not empty
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=vbucket)
    assert error_code(exc.value) == "BucketNotEmpty"
    # removing the marker brings the object back
    undo = s3.delete_object(Bucket=vbucket, Key="doc", VersionId=gone["VersionId"])
    assert undo["DeleteMarker"] is True and undo["VersionId"] == gone["VersionId"]
    assert s3.get_object(Bucket=vbucket, Key="doc")["Body"].read() == b"one"
    # DeleteObjects: a marker for a key, a version by id
    second = s3.put_object(Bucket=vbucket, Key="doc", Body=b"two")["VersionId"]
    out = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "doc"}, {"Key": "doc", "VersionId": first}]})
    by_version = {d.get("VersionId"): d for d in out["Deleted"]}
    marker = next(d for d in out["Deleted"] if d.get("DeleteMarker"))
    assert marker["DeleteMarkerVersionId"] not in (first, second) and first in by_version
    assert versions(s3, vbucket) == ([("doc", second, False)],
                                     [("doc", marker["DeleteMarkerVersionId"], True)])
    # everything removed by id: the bucket can go
    for vid in (second, marker["DeleteMarkerVersionId"]):
        s3.delete_object(Bucket=vbucket, Key="doc", VersionId=vid)
    s3.delete_bucket(Bucket=vbucket)


def test_suspended_null_versions(s3, vbucket):
    kept = s3.put_object(Bucket=vbucket, Key="s", Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket=vbucket, VersioningConfiguration={"Status": "Suspended"})
    put = s3.put_object(Bucket=vbucket, Key="s", Body=b"n1")
    assert "x-amz-version-id" not in put["ResponseMetadata"]["HTTPHeaders"]  # as S3
    s3.put_object(Bucket=vbucket, Key="s", Body=b"n2")  # replaces the null version
    assert versions(s3, vbucket)[0] == [("s", "null", True), ("s", kept, False)]
    assert s3.get_object(Bucket=vbucket, Key="s", VersionId="null")["Body"].read() == b"n2"
    s3.delete_object(Bucket=vbucket, Key="s")  # a null delete marker replaces the null version
    assert versions(s3, vbucket) == ([("s", kept, False)], [("s", "null", True)])


def test_suspended_writes_replace_the_null_version_and_reads_name_it(server, s3, vbucket,
                                                                     tmp_path):
    """In a suspended bucket PutObject, CopyObject, CompleteMultipartUpload, POST Object and the
    aws CLI each replace the key's null version and, as S3, name no version in their answer;
    GET and HEAD of a null version in a bucket with versioning answer x-amz-version-id: null,
    in an unversioned bucket none; a DELETE's null marker is named."""
    kept = s3.put_object(Bucket=vbucket, Key="w", Body=b"versioned")["VersionId"]
    s3.put_bucket_versioning(Bucket=vbucket, VersioningConfiguration={"Status": "Suspended"})
    assert "VersionId" not in s3.copy_object(Bucket=vbucket, Key="w", CopySource={
        "Bucket": vbucket, "Key": "w", "VersionId": kept})
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="w")["UploadId"]
    etag = s3.upload_part(Bucket=vbucket, Key="w", UploadId=upload, PartNumber=1,
                          Body=b"multipart")["ETag"]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="w", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                    "ETag": etag}]})
    assert "VersionId" not in done
    post = s3.generate_presigned_post(vbucket, "w")
    r = httpx.post(post["url"], data=post["fields"], files={"file": b"posted"})
    assert r.status_code == 204 and "x-amz-version-id" not in r.headers
    aws = aws_cli(server, tmp_path, check=True)
    (tmp_path / "body").write_bytes(b"from the cli")
    out = json.loads(aws("s3api", "put-object", "--bucket", vbucket, "--key", "w", "--body",
                         str(tmp_path / "body")).stdout)
    assert "VersionId" not in out
    # one null version all along, beside the version kept from before
    assert versions(s3, vbucket)[0] == [("w", "null", True), ("w", kept, False)]
    got = s3.get_object(Bucket=vbucket, Key="w")
    assert (got["Body"].read(), got["VersionId"]) == (b"from the cli", "null")
    assert s3.head_object(Bucket=vbucket, Key="w")["VersionId"] == "null"
    head = json.loads(aws("s3api", "head-object", "--bucket", vbucket, "--key", "w").stdout)
    assert head["VersionId"] == "null"
    assert s3.get_object(Bucket=vbucket, Key="w", VersionId=kept)["VersionId"] == kept
    gone = s3.delete_object(Bucket=vbucket, Key="w")
    assert (gone["VersionId"], gone["DeleteMarker"]) == ("null", True)
    assert versions(s3, vbucket) == ([("w", kept, False)], [("w", "null", True)])
    # an object from before versioning was enabled is the null version, and named so
    later = new_bucket(s3, "later")
    s3.put_object(Bucket=later, Key="old", Body=b"before")
    s3.put_bucket_versioning(Bucket=later, VersioningConfiguration={"Status": "Enabled"})
    assert s3.head_object(Bucket=later, Key="old")["VersionId"] == "null"
    # an unversioned bucket names no version anywhere
    plain = new_bucket(s3, "plain")
    assert "VersionId" not in s3.put_object(Bucket=plain, Key="k", Body=b"x")
    assert "VersionId" not in s3.get_object(Bucket=plain, Key="k")
    assert "VersionId" not in s3.head_object(Bucket=plain, Key="k")
    assert "VersionId" not in s3.delete_object(Bucket=plain, Key="k")


def test_unversioned_bucket_lists_null_versions(s3):
    bucket = new_bucket(s3, "plain")
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    assert "VersionId" not in put
    s3.put_object(Bucket=bucket, Key="a", Body=b"y")
    s3.put_object(Bucket=bucket, Key="b", Body=b"z")
    assert versions(s3, bucket) == ([("a", "null", True), ("b", "null", True)], [])
    assert s3.get_object(Bucket=bucket, Key="a", VersionId="null")["Body"].read() == b"y"
    s3.delete_object(Bucket=bucket, Key="a", VersionId="null")
    assert versions(s3, bucket) == ([("b", "null", True)], [])
    # the cleanup S3 test tools do: list versions, delete each, delete the bucket
    for v in s3.list_object_versions(Bucket=bucket)["Versions"]:
        s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=bucket)


def test_copy_and_multipart_versions(s3, vbucket):
    old = s3.put_object(Bucket=vbucket, Key="src", Body=b"old")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="src", Body=b"new")
    copy = s3.copy_object(Bucket=vbucket, Key="dst",
                          CopySource={"Bucket": vbucket, "Key": "src", "VersionId": old})
    assert copy["CopySourceVersionId"] == old and copy["VersionId"] not in ("null", old)
    assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"old"
    # restoring an old version over its own key is allowed
    s3.copy_object(Bucket=vbucket, Key="src", CopySource={"Bucket": vbucket, "Key": "src",
                                                          "VersionId": old})
    assert s3.get_object(Bucket=vbucket, Key="src")["Body"].read() == b"old"
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=vbucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"p")
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [
                                            {"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["VersionId"] == s3.head_object(Bucket=vbucket, Key="mp")["VersionId"]


def test_list_versions_pages_prefix_delimiter(s3, vbucket):
    expected = []
    for key in ("a", "b/1", "b/2", "c"):
        ids = [s3.put_object(Bucket=vbucket, Key=key, Body=b"x")["VersionId"] for _ in range(3)]
        expected += [(key, vid) for vid in reversed(ids)]
    seen, pages = [], 0
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=vbucket, PaginationConfig={"PageSize": 2}):
        pages += 1
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
    assert seen == expected and pages == 6
    out = s3.list_object_versions(Bucket=vbucket, Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in out["Versions"]} == {"a", "c"}
    out = s3.list_object_versions(Bucket=vbucket, Prefix="b/", KeyMarker="b/1",
                                  VersionIdMarker=expected[3][1])
    assert [(v["Key"], v["VersionId"]) for v in out["Versions"]] == expected[4:9]
    out = s3.list_object_versions(Bucket=vbucket, Delimiter="/", MaxKeys=4)  # a (3 versions), b/
    assert out["IsTruncated"] and out["NextKeyMarker"] == "b/"
    out = s3.list_object_versions(Bucket=vbucket, Delimiter="/", KeyMarker="b/")
    assert {v["Key"] for v in out["Versions"]} == {"c"} and "CommonPrefixes" not in out


def test_version_id_reaches_raw_http(server, s3, vbucket):
    """A versionId of another bucket's shape is refused before it reaches the store."""
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": vbucket, "Key": "k",
                                                          "VersionId": "ab" * 16})
    r = httpx.get(url)
    assert r.status_code == 404 and b"NoSuchVersion" in r.content


def test_aws_cli_list_object_versions(server, s3, tmp_path):
    aws = aws_cli(server, tmp_path, check=True)
    bucket = new_bucket(s3, "cliver")
    aws("s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration",
        "Status=Enabled")
    for body in (b"1", b"2"):
        s3.put_object(Bucket=bucket, Key="f", Body=body)
    aws("s3", "rm", f"s3://{bucket}/f")
    out = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert len(out["Versions"]) == 2 and len(out["DeleteMarkers"]) == 1
    assert out["DeleteMarkers"][0]["IsLatest"] is True


# the store in-process, over both engines

async def body(*chunks: bytes):
    for c in chunks:
        yield c


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with open_database(request.param, tmp_path) as db:
        yield ObjectStore(db, tmp_path, "eu-west-1")


async def test_store_versions_events_and_blobs(store):
    records: list[dict] = []

    async def hook(record: dict) -> None:
        records.append(record)

    store.on_event = hook
    await store.create_bucket("evs")
    await store.set_versioning("evs", "Enabled")
    a = await store.put_object("evs", "k", body(b"a"), headers={})
    b = await store.put_object("evs", "k", body(b"b"), headers={})
    [marker] = await store.delete_objects("evs", ["k"])
    assert marker.created and marker.marker
    names = [(r["eventName"], r["s3"]["object"].get("versionId")) for r in records]
    assert names == [("ObjectCreated:Put", a.version), ("ObjectCreated:Put", b.version),
                     ("ObjectRemoved:DeleteMarkerCreated", marker.version)]
    # both blobs are kept while their versions exist
    assert len(list(store.blobs.root.glob("??/*"))) == 2
    with pytest.raises(S3Error) as exc:
        await store.get_object("evs", "k")
    assert exc.value.headers["x-amz-delete-marker"] == "true"
    await store.delete_objects("evs", [("k", a.version)])
    assert records[-1]["eventName"] == "ObjectRemoved:Delete"
    assert records[-1]["s3"]["object"]["versionId"] == a.version
    await store.removals()  # (a removed version's content goes after the answer)
    assert len(list(store.blobs.root.glob("??/*"))) == 1
    page = await store.list_versions("evs")
    assert [(r["version"], latest) for r, latest in page.rows] == [
        (marker.version, True), (b.version, False)]


async def test_store_if_none_match_race(store):
    """If-None-Match: * is decided by one insert: of many writers of a new key, one wins."""
    import asyncio

    await store.create_bucket("race")
    results = await asyncio.gather(*(
        store.put_object("race", "once", body(b"%d" % i), headers={}, if_none_match=True)
        for i in range(8)), return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, S3Error) and r.code == "PreconditionFailed"
               for r in results if r not in wins)
    assert len(list(store.blobs.root.glob("??/*"))) == 1
