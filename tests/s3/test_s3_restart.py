"""Objects, uploads in progress and the default key survive a restart on the same data dir;
blobs no metadata points at (a crash between write and commit) are swept at start."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError
from conftest import start_server, stop_server
from s3_helpers import credentials, s3_client


def test_objects_survive_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    srv = start_server(data_dir)
    try:
        creds = credentials(data_dir)
        s3 = s3_client(srv)
        s3.create_bucket(Bucket="keep")
        small = s3.put_object(Bucket="keep", Key="a/small", Body=b"small", Metadata={"m": "1"})
        big = os.urandom(6 * 1024 * 1024)
        uid = s3.create_multipart_upload(Bucket="keep", Key="big")["UploadId"]
        etags = [s3.upload_part(Bucket="keep", Key="big", UploadId=uid, PartNumber=n,
                                Body=p)["ETag"]
                 for n, p in enumerate([big[:5 * 1024 * 1024], big[5 * 1024 * 1024:]], 1)]
        done = s3.complete_multipart_upload(
            Bucket="keep", Key="big", UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e}
                                       for n, e in enumerate(etags, 1)]})
        pending = s3.create_multipart_upload(Bucket="keep", Key="later")["UploadId"]
        s3.upload_part(Bucket="keep", Key="later", UploadId=pending, PartNumber=1, Body=b"p1")
    finally:
        stop_server(srv)
    orphan = data_dir / "objects" / "ff" / ("ff" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    (data_dir / "objects" / "tmp" / "half-written").write_bytes(b"...")

    srv = start_server(data_dir)
    try:
        assert credentials(data_dir) == creds  # no second default key
        s3 = s3_client(srv)
        g = s3.get_object(Bucket="keep", Key="a/small")
        assert g["Body"].read() == b"small" and g["ETag"] == small["ETag"]
        assert g["Metadata"] == {"m": "1"}
        g = s3.get_object(Bucket="keep", Key="big")
        assert hashlib.sha256(g["Body"].read()).digest() == hashlib.sha256(big).digest()
        assert g["ETag"] == done["ETag"]
        parts = s3.list_parts(Bucket="keep", Key="later", UploadId=pending)["Parts"]
        assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 2)]
        assert not orphan.exists()
        assert not list((data_dir / "objects" / "tmp").iterdir())
    finally:
        stop_server(srv)


def _tmp_bytes(data_dir) -> int:
    return sum(p.stat().st_size for p in (data_dir / "objects" / "tmp").iterdir())


def test_kill_9_mid_upload_leaves_no_half_object(tmp_path):
    """A server killed (SIGKILL) while a 64 MiB PUT is being written: after a restart the key
    still has its old content, a new key does not exist, and the partial file is gone."""
    data_dir = tmp_path / "data"
    srv = start_server(data_dir)
    try:
        s3 = s3_client(srv)
        s3.create_bucket(Bucket="crash")
        old = s3.put_object(Bucket="crash", Key="kept", Body=b"the old content")
        body = os.urandom(64 * 1024 * 1024)
        socks = []
        for key in ("kept", "new"):
            url = urlsplit(s3.generate_presigned_url(
                "put_object", Params={"Bucket": "crash", "Key": key}))
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
            conn.putrequest("PUT", f"{url.path}?{url.query}", skip_accept_encoding=True)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[:40 * 1024 * 1024])  # more than half: the rest never comes
            socks.append(conn)
        deadline = time.monotonic() + 60  # until the server has written both (a busy machine)
        while _tmp_bytes(data_dir) < 2 * 32 * 1024 * 1024:
            assert time.monotonic() < deadline, f"only {_tmp_bytes(data_dir)} bytes written"
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
        for conn in socks:
            conn.close()
    finally:
        stop_server(srv)
    assert list((data_dir / "objects" / "tmp").iterdir())  # the half-written files

    srv = start_server(data_dir)
    try:
        s3 = s3_client(srv)
        got = s3.get_object(Bucket="crash", Key="kept")
        assert got["Body"].read() == b"the old content" and got["ETag"] == old["ETag"]
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="crash", Key="new")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        listed = s3.list_objects_v2(Bucket="crash")["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("kept", 15)]
        assert not list((data_dir / "objects" / "tmp").iterdir())
        blobs = [p for p in (data_dir / "objects").rglob("*") if p.is_file()]
        assert len(blobs) == 1  # the old content's, nothing else
    finally:
        stop_server(srv)
