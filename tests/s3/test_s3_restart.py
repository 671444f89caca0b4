"""Objects, uploads in progress and the default key survive a restart on the same data dir;
blobs no metadata points at (a crash between write and commit) are swept at start."""

from __future__ import annotations

import hashlib
import os

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
