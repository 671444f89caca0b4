"""The built-in S3 store on a 3-node cluster (issue 14, point 5): any node serves any bucket
(object data in JetStream's `{cluster}_objects`, metadata in PostgreSQL), a multipart upload
begun on one node is completed on another, a bucket notification fires once per change
however many nodes there are, webhook ingestion of an external store works, and a code
bundle deployed through one node is served by a node that never ran it."""

from __future__ import annotations

import configparser
import hashlib
import os
import sys
from pathlib import Path

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore.config import Config
from cluster_helpers import Cluster, poll, three_nodes
from conftest import Server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "buckets"))
from bucket_helpers import ECHO, lambda_config, logged, notify
from bucket_helpers import deploy as deploy_files

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    yield from three_nodes(tmp_path_factory)


def credentials(cluster: Cluster) -> tuple[str, str]:
    """The default access key, written by whichever node created it on the first start."""
    for server in cluster.up():
        path = server.data_dir / "credentials"
        if path.exists():
            cp = configparser.ConfigParser()
            cp.read(path)
            return cp["default"]["aws_access_key_id"], cp["default"]["aws_secret_access_key"]
    raise AssertionError("no node wrote the first-start credentials")


def s3_of(server: Server, creds: tuple[str, str]):
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def s3s(cluster3):
    creds = credentials(cluster3)
    return [s3_of(server, creds) for server in cluster3.up()]


@pytest.fixture(scope="module")
def echo(cluster3):
    """A function that prints each event it gets (process tier: no jail needed here)."""
    deploy_files(cluster3.node(0), "echo", {"handler.py": ECHO,
                                            "dayfly.toml": 'isolation = "process"\n'})
    # the other nodes learn of it by the change push (within a second, not at once): a
    # notification naming it is validated against the node's own registry
    assert poll(lambda: all(httpx.get(f"{s.url}/2015-03-31/functions/echo").status_code == 200
                            for s in cluster3.up()), 10)
    return "echo"


def test_any_node_serves_a_bucket_and_its_objects(s3s):
    a, b, c = s3s
    a.create_bucket(Bucket="shared-one")
    data = os.urandom(3 * MiB + 123)
    etag = a.put_object(Bucket="shared-one", Key="dir/blob.bin", Body=data,
                        ContentType="application/x-test", Metadata={"who": "node0"})["ETag"]
    for s3 in (b, c):  # node 1 and 2 never saw the PUT: metadata from PostgreSQL, data fetched
        assert "shared-one" in [x["Name"] for x in s3.list_buckets()["Buckets"]]
        listed = s3.list_objects_v2(Bucket="shared-one")["Contents"]
        assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
            ("dir/blob.bin", len(data), etag)]
        got = s3.get_object(Bucket="shared-one", Key="dir/blob.bin")
        assert got["Body"].read() == data and got["ETag"] == etag
        assert got["ContentType"] == "application/x-test" and got["Metadata"] == {"who": "node0"}
    # ranges, on a node with its cached copy and on one reading a range first
    a.put_object(Bucket="shared-one", Key="ranged", Body=data)
    for s3 in (c, b, a):
        for header, want in (("bytes=0-99", data[:100]),
                             ("bytes=1048570-2097160", data[1048570:2097161]),
                             ("bytes=-10", data[-10:]),
                             (f"bytes={len(data) - 5}-", data[-5:])):
            got = s3.get_object(Bucket="shared-one", Key="ranged", Range=header)
            assert got["Body"].read() == want, header
            assert got["ContentRange"].endswith(f"/{len(data)}")
    # an overwrite through node 1 is what node 0 and 2 serve next; a delete through node 2 is
    # gone everywhere
    b.put_object(Bucket="shared-one", Key="dir/blob.bin", Body=b"second")
    for s3 in (a, c):
        assert s3.get_object(Bucket="shared-one", Key="dir/blob.bin")["Body"].read() == b"second"
    c.delete_object(Bucket="shared-one", Key="dir/blob.bin")
    for s3 in (a, b):
        with pytest.raises(botocore.exceptions.ClientError) as err:
            s3.get_object(Bucket="shared-one", Key="dir/blob.bin")
        assert err.value.response["Error"]["Code"] == "NoSuchKey"


def test_a_multipart_upload_begun_on_one_node_completes_on_another(s3s):
    a, b, c = s3s
    a.create_bucket(Bucket="shared-mpu")
    up = a.create_multipart_upload(Bucket="shared-mpu", Key="big")["UploadId"]
    p1, p2, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)
    parts = [{"PartNumber": 1, "ETag": a.upload_part(Bucket="shared-mpu", Key="big",
                                                     UploadId=up, PartNumber=1,
                                                     Body=p1)["ETag"]},
             {"PartNumber": 2, "ETag": b.upload_part(Bucket="shared-mpu", Key="big",
                                                     UploadId=up, PartNumber=2,
                                                     Body=p2)["ETag"]},
             {"PartNumber": 3, "ETag": c.upload_part(Bucket="shared-mpu", Key="big",
                                                     UploadId=up, PartNumber=3,
                                                     Body=p3)["ETag"]}]
    listed = b.list_parts(Bucket="shared-mpu", Key="big", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, 5 * MiB), (2, 5 * MiB),
                                                              (3, 1234)]
    assert [u["UploadId"] for u in c.list_multipart_uploads(Bucket="shared-mpu")["Uploads"]
            ] == [up]
    # node 1 completes: it holds part 2 only; parts 1 and 3 come from the shared store
    done = b.complete_multipart_upload(Bucket="shared-mpu", Key="big", UploadId=up,
                                       MultipartUpload={"Parts": parts})
    assert done["ETag"].endswith('-3"')
    whole = p1 + p2 + p3
    for s3 in (c, a, b):
        got = s3.get_object(Bucket="shared-mpu", Key="big")
        assert got["ContentLength"] == len(whole) and got["ETag"] == done["ETag"]
        assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(whole).digest()
        part = s3.get_object(Bucket="shared-mpu", Key="big", Range="bytes=5242870-5242889")
        assert part["Body"].read() == whole[5242870:5242890]
    # an upload begun on node 2 and aborted on node 0 is gone for all
    up2 = c.create_multipart_upload(Bucket="shared-mpu", Key="gone")["UploadId"]
    c.upload_part(Bucket="shared-mpu", Key="gone", UploadId=up2, PartNumber=1, Body=b"x")
    a.abort_multipart_upload(Bucket="shared-mpu", Key="gone", UploadId=up2)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        b.list_parts(Bucket="shared-mpu", Key="gone", UploadId=up2)
    assert err.value.response["Error"]["Code"] == "NoSuchUpload"


def echoed(cluster: Cluster, via: int, bucket: str) -> list[dict]:
    """The S3 records the echo function received for `bucket`, from every node's invocations
    (they are all in the one database), read through node `via`."""
    return [e["Records"][0] for e in logged(cluster.node(via), "echo")
            if e.get("Records") and e["Records"][0].get("s3", {}).get("bucket", {}).get("name")
            == bucket]


def configured(server: Server, bucket: str) -> bool:
    """Whether `server` holds a notification configuration of the built-in `bucket`."""
    got = httpx.get(f"{server.url}/dayfly/v1/bucket-triggers", params={"bucket": bucket})
    return any(t["source"] == "local" for t in got.json()["triggers"])


def test_a_bucket_notification_fires_once_per_put_however_many_nodes(cluster3, s3s, echo):
    a, b, c = s3s
    a.create_bucket(Bucket="shared-events")
    notify(b, "shared-events", lambda_config("echo", ["s3:ObjectCreated:*"],
                                             config_id="all"))
    # every node follows the configuration made through node 1 within a second
    assert poll(lambda: all(configured(s, "shared-events") for s in cluster3.up()), 5)
    keys = []
    for n, s3 in enumerate((a, b, c, a, b, c)):
        key = f"k{n}"
        s3.put_object(Bucket="shared-events", Key=key, Body=key.encode())
        keys.append(key)

    def seen() -> list[str]:
        return sorted(r["s3"]["object"]["key"] for r in echoed(cluster3, 2, "shared-events"))
    assert poll(lambda: set(seen()) >= set(keys), 30), seen()
    # a last PUT, delivered after the others: a copy of an earlier event (one per node) would
    # have arrived by the time this one did in the queue's order, so count after it
    c.put_object(Bucket="shared-events", Key="last", Body=b"!")
    assert poll(lambda: "last" in seen(), 30), seen()
    assert seen() == sorted([*keys, "last"]), "a PUT fired more than once (or not at all)"
    # the invocation records, each a node's (every node that ran one says so)
    invs = httpx.get(f"{cluster3.node(1).url}/dayfly/v1/functions/echo/invocations",
                     params={"limit": 1000}).json()["invocations"]
    ours = [i for i in invs if "shared-events" in i["logs"]]
    assert len(ours) == len(keys) + 1 and all(i["trigger"] == "s3" for i in ours)
    assert {i["node"] for i in ours} <= {"node0", "node1", "node2"}


def test_webhook_ingestion_of_an_external_store(cluster3, echo):
    api = [httpx.Client(base_url=s.url, timeout=30) for s in cluster3.up()]
    try:
        r = api[0].post("/dayfly/v1/ingest/sources", json={"name": "lab"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        trigger = {"function": "echo", "bucket": "media", "source": "lab",
                   "events": "created", "id": "lab-media"}
        # node 1 knows the source within a second of its creation through node 0
        r = poll(lambda: (lambda r: r if r.status_code != 404 else None)(
            api[1].post("/dayfly/v1/bucket-triggers", json=trigger)), 2)
        assert r and r.status_code == 201, r and r.text
        body = {"EventName": "s3:ObjectCreated:Put", "Key": "media/clip.mp4"}

        def post(i: int) -> httpx.Response:
            return api[i].post("/dayfly/v1/ingest/s3/lab", json=body,
                               headers={"Authorization": f"Bearer {token}"})
        # the source and its trigger were made through nodes 0 and 1; node 2 follows both
        assert poll(lambda: post(2).json() == {"records": 1, "routed": 1, "queued": 1}, 5)
        got = poll(lambda: echoed(cluster3, 0, "media"), 30)
        assert got and got[0]["eventName"] == "ObjectCreated:Put"
        assert got[0]["s3"]["configurationId"] == "lab-media"
        assert post(1).status_code == 200
        assert poll(lambda: len(echoed(cluster3, 2, "media")) == 2, 30)
        r = api[2].post("/dayfly/v1/ingest/s3/lab", json=body,
                        headers={"Authorization": "Bearer dfi_wrong"})
        assert r.status_code == 401
    finally:
        for client in api:
            client.close()


def test_a_bundle_deployed_elsewhere_is_served_by_a_node_that_never_ran_it(cluster3):
    deploy_files(cluster3.node(0), "bundled", {"handler.py": "def handler(e, c):\n    return 1\n",
                                               "dayfly.toml": 'isolation = "process"\n'})
    lam = cluster3.node(2).lambda_client()
    location = poll(lambda: _location(lam), 5)
    assert location, "node 2 does not know the function deployed through node 0"
    path = location[location.index("/dayfly/v1/bundles/"):]
    r = httpx.get(f"{cluster3.node(2).url}{path}", timeout=30)
    assert r.status_code == 200, r.text
    digest = path.rsplit("/", 1)[1].removesuffix(".zip")
    assert hashlib.sha256(r.content).hexdigest() == digest
    r = httpx.get(f"{cluster3.node(1).url}/dayfly/v1/bundles/{'0' * 64}.zip")
    assert r.status_code == 404


def _location(lam) -> str | None:
    try:
        return lam.get_function(FunctionName="bundled")["Code"]["Location"]
    except lam.exceptions.ResourceNotFoundException:
        return None
