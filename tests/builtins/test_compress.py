"""compress end to end: gzip, zstd, zip and tar(.gz/.zst) written by the builtin and read back by
the standard readers; extraction into a prefix; every archive guard refuses (zip slip,
absolute paths, links, too many entries, bombs, corrupt data) and leaves nothing behind."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile

import pytest
from builtin_helpers import (
    add_bucket_trigger,
    deploy_builtin,
    deployed,
    invocations,
    invoke,
    keys,
    s3_client,
    s3_event,
    wait_for,
)

zstandard = pytest.importorskip("zstandard")

TEXT = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i
                for i in range(20000))


@pytest.fixture(scope="module")
def s3(server):
    client = s3_client(server)
    for b in ("data", "packed", "archives", "unpacked"):
        client.create_bucket(Bucket=b)
    return client


def body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_bucket_trigger_gzips_a_large_object_in_parts(server, s3):
    deployed(server, "compress", "gz", {
        "source_bucket": "data", "source_prefix": "logs/", "target_bucket": "packed",
        "format": "gzip", "level": 1, "part_size_mb": 5})
    add_bucket_trigger(server, "gz", "data", prefix="logs/")
    blob = os.urandom(7 * 1024 * 1024) + TEXT * 6  # > two 5 MiB parts after compression
    s3.put_object(Bucket="data", Key="logs/app.log", Body=blob)
    assert wait_for(lambda: keys(s3, "packed", "compressed/"), 60)
    out = s3.head_object(Bucket="packed", Key="compressed/logs/app.log.gz")
    packed = body(s3, "packed", "compressed/logs/app.log.gz")
    # streamed over the bucket binding in parts, stored as one PutObject: the ETag is the MD5
    assert out["ETag"] == f'"{hashlib.md5(packed).hexdigest()}"'
    assert gzip.decompress(packed) == blob
    (rec,) = [i for i in invocations(server, "gz") if i["trigger"] == "s3"]
    assert rec["status"] == "success"


def test_zstd_of_one_object_streams_in_bounded_memory(server, s3):
    deployed(server, "compress", "zst", {
        "source_bucket": "data", "target_bucket": "packed", "format": "zstd", "level": 1,
        "part_size_mb": 5, "target_key": "z/{name}.{ext}"})
    blob = os.urandom(1024 * 1024) * 96  # 96 MiB: more than the instance ever holds
    s3.upload_fileobj(io.BytesIO(blob), "data", "big.bin")
    err, out = invoke(server, "zst", {"bucket": "data", "key": "big.bin"})
    assert err is None and out["written"][0]["input_bytes"] == len(blob), out
    packed = body(s3, "packed", "z/big.bin.zst")
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed)).read() == blob
    rec = next(i for i in invocations(server, "zst") if i["status"] == "success")
    # holding the object would take 96 MiB on top of the interpreter; parts in flight do not
    assert rec["max_rss_kb"] < 90 * 1024, rec["max_rss_kb"]


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz", "tar.zst"])
def test_a_prefix_becomes_one_archive(server, s3, fmt):
    files = {f"proj/src/m{i}.py": TEXT[: 1000 * (i + 1)] for i in range(5)}
    files["proj/README"] = b"read me"
    for k, v in files.items():
        s3.put_object(Bucket="data", Key=k, Body=v)
    name = "pack-" + fmt.replace(".", "")
    deployed(server, "compress", name, {"source_bucket": "data", "target_bucket": "archives",
                                        "format": fmt, "target_key": "{key}.{ext}"})
    err, out = invoke(server, name, {"bucket": "data", "prefix": "proj/"})
    assert err is None and out["written"][0]["objects"] == 6, out
    data = body(s3, "archives", f"proj.{fmt}")
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            got = {n: zf.read(n) for n in zf.namelist()}
    else:
        raw = io.BytesIO(data)
        if fmt == "tar.zst":
            raw = zstandard.ZstdDecompressor().stream_reader(raw)
        with tarfile.open(fileobj=raw, mode="r|gz" if fmt == "tar.gz" else "r|") as tf:
            got = {ti.name: tf.extractfile(ti).read() for ti in tf}
    assert got == {k.removeprefix("proj/"): v for k, v in files.items()}


def _zip(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _tar(entries: list[tuple[str, bytes, bytes]], mode: str = "w:gz") -> bytes:
    """(name, data, type) entries; type is a tarfile type byte (REGTYPE, SYMTYPE, ...)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data, kind in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            if kind == tarfile.REGTYPE:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.linkname = "/etc/passwd"
                tf.addfile(ti)
    return buf.getvalue()


def _tar_zst(entries: list[tuple[str, bytes, bytes]]) -> bytes:
    return zstandard.ZstdCompressor().compress(_tar(entries, "w"))


@pytest.fixture(scope="module")
def extractor(server, s3):
    deployed(server, "compress", "unpack", {
        "mode": "extract", "source_bucket": "archives", "target_bucket": "unpacked",
        "target_prefix": "{stem}/", "max_entries": 20, "max_ratio": 50,
        "max_total_bytes": 4 * 1024 * 1024})
    return "unpack"


@pytest.mark.parametrize(("key", "make"), [
    ("good.zip", lambda files: _zip([(k, v, None) for k, v in files.items()])),
    ("good.tar.gz", lambda files: _tar([(k, v, tarfile.REGTYPE) for k, v in files.items()])),
    ("good.tar.zst", lambda files: _tar_zst([(k, v, tarfile.REGTYPE) for k, v in files.items()])),
])
def test_archives_extract_into_a_prefix(server, s3, extractor, key, make):
    files = {"a.txt": os.urandom(3000), "dir/b.bin": os.urandom(200_000), "./c/d.txt": b"d"}
    s3.put_object(Bucket="archives", Key=key, Body=make(files))
    err, out = invoke(server, extractor, s3_event("archives", key))
    assert err is None, out
    stem = key.split(".")[0]
    assert keys(s3, "unpacked", f"{stem}/") == [f"{stem}/a.txt", f"{stem}/c/d.txt",
                                                f"{stem}/dir/b.bin"]
    assert body(s3, "unpacked", f"{stem}/dir/b.bin") == files["dir/b.bin"]
    s3.delete_objects(Bucket="unpacked", Delete={"Objects": [{"Key": k} for k in
                                                             keys(s3, "unpacked", f"{stem}/")]})


def test_a_gzip_stream_extracts_to_one_object(server, s3, extractor):
    s3.put_object(Bucket="archives", Key="notes.txt.gz", Body=gzip.compress(TEXT[:60000]))
    err, out = invoke(server, extractor, s3_event("archives", "notes.txt.gz"))
    assert err is None, out
    assert body(s3, "unpacked", "notes.txt") == TEXT[:60000]
    s3.delete_object(Bucket="unpacked", Key="notes.txt")


REG, SYM, LNK, FIFO = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE
GUARDS = {
    "zip-slip": ("slip.zip", lambda: _zip([("ok.txt", b"ok", None),
                                           ("../../evil.txt", b"x", None)]), "traversal"),
    "zip-absolute": ("abs.zip", lambda: _zip([("/etc/cron.d/x", b"x", None)]), "absolute"),
    "zip-symlink": ("link.zip", lambda: _zip([("ok.txt", b"ok", None),
                                              ("l", b"/etc/passwd", stat.S_IFLNK | 0o777)]),
                    "symbolic links are refused"),
    "zip-entries": ("many.zip", lambda: _zip([(f"f{i}", b"x", None) for i in range(25)]),
                    "more than max_entries=20"),
    "zip-bomb": ("bomb.zip", lambda: _zip([("zeros", bytes(3 * 1024 * 1024), None)]),
                 "max_ratio=50"),
    "zip-total": ("total.zip", lambda: _zip([(f"r{i}", os.urandom(1024 * 1024), None)
                                             for i in range(5)]), "max_total_bytes"),
    "zip-corrupt": ("corrupt.zip", lambda: b"PK\x03\x04" + os.urandom(5000), "zip"),
    "tar-slip": ("slip.tar.gz", lambda: _tar([("ok.txt", b"ok", REG),
                                              ("a/../../evil", b"x", REG)]), "traversal"),
    "tar-symlink": ("link.tar.gz", lambda: _tar([("ok.txt", b"ok", REG), ("l", b"", SYM)]),
                    "links are refused"),
    "tar-hardlink": ("hard.tar.gz", lambda: _tar([("h", b"", LNK)]), "links are refused"),
    "tar-fifo": ("fifo.tar.gz", lambda: _tar([("p", b"", FIFO)]), "special files"),
    "tar-bomb": ("bomb.tar.zst", lambda: _tar_zst([("ok.txt", b"ok", REG),
                                                   ("zeros", bytes(3 * 1024 * 1024), REG)]),
                 "max_ratio=50"),
    "tar-corrupt": ("corrupt.tar.gz", lambda: gzip.compress(os.urandom(100))[:60], "corrupt"),
    "gzip-bomb": ("zeros.gz", lambda: gzip.compress(bytes(4 * 1024 * 1024)), "max_ratio=50"),
}


@pytest.mark.parametrize("case", list(GUARDS))
def test_archive_guards_refuse_and_leave_nothing(server, s3, extractor, case):
    key, make, words = GUARDS[case]
    s3.put_object(Bucket="archives", Key=key, Body=make())
    err, out = invoke(server, extractor, s3_event("archives", key))
    assert err == "Unhandled" and out["errorType"] == "ArchiveRefused", out
    assert words in out["errorMessage"], out["errorMessage"]
    assert keys(s3, "unpacked") == []  # refused up front, or rolled back


def test_configuration_is_validated_at_deploy(server, s3):
    cases = [
        ({"source_bucket": "data", "target_bucket": "packed", "format": "rar"},
         "must be one of gzip, zstd, zip, tar, tar.gz, tar.zst"),
        ({"source_bucket": "data", "target_bucket": "packed", "level": 30}, "from 1 to 9"),
        ({"source_bucket": "data", "format": "zstd"}, "the function would trigger itself"),
        ({"source_bucket": "data", "target_bucket": "packed", "mode": "extract",
          "target_key": "x/{key}"}, "is for mode = \"compress\""),
        ({"source_bucket": "data", "target_bucket": "packed", "part_size_mb": 2},
         "from 5 to 512"),
        ({"source_bucket": "data", "target_bucket": "packed", "target_key": "{key!r}"},
         "plain placeholders"),
    ]
    for config, words in cases:
        out = deploy_builtin(server, "compress", "bad-compress", config)
        assert "error" in out and words in out["error"]["message"], (config, out)
