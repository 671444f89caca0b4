"""The builtins' pieces without a server: validators, bundles, key patterns, SigV4 against
botocore's signer, archive name rules, templates, signatures, rate limits, image geometry."""

from __future__ import annotations

import io
import json
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from dayfly.builtins import catalog
from dayfly.builtins._lib import keys, sigv4
from dayfly.control import manifest
from dayfly.errors import InvalidParameter

ROOT = Path(catalog.__file__).parent
for sub in ("", "image_transform", "notify", "compress"):  # as each bundle's /var/task sees it
    sys.path.insert(0, str(ROOT / sub))

import delivery  # noqa: E402
import fields  # noqa: E402
import guards  # noqa: E402
import webhook  # noqa: E402

IMAGE = {"source_bucket": "photos", "target_bucket": "thumbs", "width": 256}


def bundle_files(name: str, config: dict) -> dict[str, bytes]:
    data, _ = catalog.package(name, config)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_catalog_lists_every_builtin_with_its_options():
    assert list(catalog.BUILTINS) == ["image-transform", "notify", "compress"]
    for b in catalog.BUILTINS.values():
        doc = b.to_json()
        assert doc["summary"] and doc["events"] and doc["options"]
        assert all(set(o) == {"name", "type", "default", "required", "help"}
                   for o in doc["options"])
    with pytest.raises(InvalidParameter, match="no builtin named 'resize'"):
        catalog.get("resize")


def test_bundle_holds_code_lib_config_and_a_complete_manifest():
    files = bundle_files("image-transform", IMAGE)
    assert {"handler.py", "transform.py", "image_ops.py", "requirements.txt", "_lib/s3.py",
            "_lib/sigv4.py", "_lib/net.py", "config.json", "dayfly.toml"} <= set(files)
    assert not [n for n in files if "__pycache__" in n or n.endswith(".pyc")]
    assert json.loads(files["config.json"])["operations"][1] == {
        "op": "resize", "width": 256, "height": None, "fit": "contain", "upscale": False}
    m = manifest.parse(files["dayfly.toml"].decode())
    # every capability is stated, so a redeploy never inherits an earlier configuration's
    assert m.buckets == ["photos:read", "thumbs:write"] and m.network == [] and m.secrets == []
    assert m.handler == "handler.handler" and m.memory == 1024
    assert catalog.package("image-transform", IMAGE)[0] == catalog.package("image-transform",
                                                                           IMAGE)[0]


def test_notify_manifest_grants_exactly_its_destinations_and_secrets():
    files = bundle_files("notify", {"targets": [
        {"type": "webhook", "url": "https://hooks.example.com/a?x=1", "signing_secret": "K1"},
        {"type": "webhook", "url": "http://[::1]:8080/b"},
        {"type": "email", "host": "smtp.example.com", "security": "tls", "from": "a@b.co",
         "to": "c@d.co", "password_secret": "SMTP_PW", "username": "a"}]})
    m = tomllib.loads(files["dayfly.toml"].decode())
    assert m["network"] == ["[::1]:8080", "hooks.example.com:443", "smtp.example.com:465"]
    assert m["secrets"] == ["K1", "SMTP_PW"] and m["buckets"] == []
    assert "_lib/s3.py" in files  # shared code rides along; without `buckets` it has no keys
    manifest.parse(files["dayfly.toml"].decode())


@pytest.mark.parametrize(("name", "config", "words"), [
    ("image-transform", {"source_bucket": "Photos"}, "must be a bucket name"),
    ("image-transform", {"source_bucket": "photos", "target_bucket": "thumbs",
                         "operations": [{"op": "blur"}]}, "op = one of"),
    ("image-transform", {**IMAGE, "operations": [{"op": "resize", "width": 1}], "width": 2},
     "cannot be combined with 'operations'"),
    ("image-transform", {**IMAGE, "width": 0}, "from 1 to 65535"),
    ("image-transform", {**IMAGE, "background": "url(x)"}, "colour"),
    ("notify", {"webhook": "http://x.example/", "targets": []}, "cannot be combined"),
    ("notify", {"webhook": "http://x.example:99999/"}, "bad port"),
    ("notify", {"targets": [{"type": "webhook", "url": "http://a.example/", "name": "n"},
                            {"type": "webhook", "url": "http://b.example/", "name": "n"}]},
     "names must be unique"),
    ("compress", {"source_bucket": "data", "target_bucket": "out", "mode": "zip"},
     "must be one of compress, extract"),
    ("compress", {"source_bucket": "data", "target_bucket": "out", "format": "tar",
                  "level": 3}, "from 0 to 0"),
    ("compress", {"source_bucket": "data", "mode": "extract", "source_prefix": "in/",
                  "target_prefix": "in/x/"}, "trigger itself"),
])
def test_validation_errors_name_the_option(name, config, words):
    with pytest.raises(InvalidParameter) as info:
        catalog.package(name, config)
    assert words in str(info.value.message) and f"builtin:{name}" in info.value.message


def test_key_patterns():
    values = {**keys.input_fields("b", "a/b/photo.tar.gz"), "width": 10}
    assert values["stem"] == "photo" and values["suffix"] == "tar.gz"
    assert keys.render("t/{dir}/{stem}-{width}.webp", values) == "t/a/b/photo-10.webp"
    assert keys.render("{dir}/{name}", keys.input_fields("b", "top.txt")) == "top.txt"
    for bad, words in (("{stem.__class__}", "plain placeholders"), ("{0}", "plain"),
                       ("{nope}", "unknown placeholder"), ("x{", "not a key pattern")):
        with pytest.raises(keys.PatternError, match=words):
            keys.check(bad, keys.INPUT_FIELDS)
    assert keys.may_overlap("{key}.gz", {}, "in/", "")
    assert not keys.may_overlap("out/{key}.gz", {}, "in/", "")
    assert not keys.may_overlap("thumbs/{stem}.{ext}", {"ext": "webp"}, "", ".jpg")
    assert keys.own_output("thumbs/{stem}-{width}.webp", {}, "thumbs/x-1.webp")
    assert not keys.own_output("thumbs/{stem}-{width}.webp", {}, "other/x-1.webp")


def test_sigv4_matches_botocore():
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = time.time()
    key = "dir/ä file+1.txt"
    path = "/bkt/" + sigv4.encode_key(key)
    query = {"list-type": "2", "prefix": "a b/", "continuation-token": "x=/+"}
    qs = sigv4.canonical_query(query)
    ours = sigv4.sign("GET", "127.0.0.1:9000", path, qs, {"range": "bytes=0-9"},
                      sigv4.EMPTY, "AKID", "SECRET", "us-east-1", now=now)
    req = AWSRequest("GET", f"http://127.0.0.1:9000{path}?{qs}", headers={"range": "bytes=0-9"})
    req.context["timestamp"] = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    S3SigV4Auth(Credentials("AKID", "SECRET"), "s3", "us-east-1").add_auth(req)
    assert ours["authorization"] == req.headers["Authorization"]


@pytest.mark.parametrize(("name", "ok"), [
    ("a.txt", "a.txt"), ("./x/./y", "x/y"), ("dir//f", "dir/f"), ("../x", None),
    ("a/../../x", None), ("/etc/passwd", None), ("C:/win", None), ("a\\..\\b", None),
    ("", None), ("a\x00b", None), ("./", None),
])
def test_archive_member_names(name, ok):
    if ok is None:
        with pytest.raises(guards.ArchiveRefused):
            guards.safe_name(name)
    else:
        assert guards.safe_name(name) == ok


def test_templates_reach_nested_fields_and_evaluate_nothing():
    batch = {"Records": [{"eventName": "MODIFY", "eventID": "e1",
                          "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/users/stream/x",
                          "dynamodb": {"Keys": {"id": {"N": "7"}},
                                       "NewImage": {"tags": {"SS": ["a", "b"]},
                                                    "n": {"N": "1.5"},
                                                    "m": {"M": {"x": {"BOOL": True}}}}}}]}
    (n,) = fields.notices(batch)
    assert (n.source, n.event, n.id, n.fields["table"]) == ("table", "MODIFY", "e1", "users")
    text = fields.render("${table}/${keys.id} ${new.tags.1} ${new.n} ${new.m} $${x} "
                         "${__class__} ${new.__class__} ${event.upper}", n)
    assert text == ('users/7 b 1.5 {"x": true} ${x} ${__class__} ${new.__class__} '
                    "${event.upper}")


def test_webhook_signature_and_cloudevents_binary_headers():
    (n,) = fields.notices({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "b"}, "object": {"key": "%C3%A9+x%25.txt", "size": 1}}}]})
    assert n.subject == "b/é x%.txt"
    body, headers = webhook.request(n, "m", "t", "cloudevents-binary")
    assert headers["ce-subject"] == "b/%C3%A9%20x%25.txt" and headers["ce-id"] == n.id
    assert json.loads(body)["message"] == "m"
    sig = webhook.signature("k", b"{}", 1700000000)
    import hashlib
    import hmac

    assert sig == "t=1700000000,v1=" + hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()


def test_rate_limiter_and_retries():
    limiter = delivery.RateLimiter(20)
    start = time.monotonic()
    for _ in range(30):  # a burst of 20, then 10 more at 20/s
        limiter.wait(start + 5)
    assert 0.4 <= time.monotonic() - start < 2
    slow = delivery.RateLimiter(0.01)
    slow.wait(time.monotonic() + 5)  # the one token of its burst
    with pytest.raises(delivery.DeliveryError, match="no time"):
        slow.wait(time.monotonic() + 1)  # the next one is 100 s away
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise delivery.DeliveryError("nope")
        return "ok"

    assert delivery.attempt(flaky, 5, 0.01, time.monotonic() + 5) == "ok" and len(calls) == 3
    calls.clear()

    def fatal():
        calls.append(1)
        raise delivery.DeliveryError("gone", retryable=False)

    with pytest.raises(delivery.DeliveryError, match="gone"):
        delivery.attempt(fatal, 5, 0.01, time.monotonic() + 5)
    assert len(calls) == 1


def _image_config(**kw) -> dict:
    cfg = catalog.get("image-transform").prepare({"source_bucket": "photos",
                                                  "target_bucket": "thumbs", **kw}).config
    return cfg


@pytest.mark.parametrize(("size", "kw", "out"), [
    ((4000, 3000), {"width": 256}, (256, 192)),
    ((4000, 3000), {"width": 300, "height": 300}, (300, 225)),
    ((4000, 3000), {"width": 300, "height": 300, "fit": "cover"}, (300, 300)),
    ((4000, 3000), {"width": 300, "height": 300, "fit": "fill"}, (300, 300)),
    ((4000, 3000), {"width": 300, "height": 100, "fit": "exact"}, (300, 100)),
    ((200, 100), {"width": 400, "height": 400, "fit": "cover"}, (200, 100)),
    ((200, 100), {"width": 400, "height": 400, "fit": "cover", "upscale": True}, (400, 400)),
    ((200, 100), {"width": 400}, (200, 100)),
    ((200, 100), {"width": 400, "upscale": True}, (400, 200)),
])
def test_resize_geometry(size, kw, out):
    pytest.importorskip("PIL")
    import transform
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, "navy").save(buf, "JPEG")
    result = transform.run(buf.getvalue(), _image_config(format="png", **kw))
    assert (result.width, result.height) == out
    assert Image.open(io.BytesIO(result.data)).size == out


def test_jpeg_draft_decoding_respects_the_exif_orientation():
    pytest.importorskip("PIL")
    import transform
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8  # stored 4000x1000, shown 1000x4000
    buf = io.BytesIO()
    Image.new("RGB", (4000, 1000), "teal").save(buf, "JPEG", exif=exif.tobytes())
    result = transform.run(buf.getvalue(), _image_config(width=500))
    assert (result.width, result.height) == (500, 2000)  # not blurred up from a 1/8 draft


def test_file_chunks_map_a_window_at_a_time(tmp_path):
    from dayfly.builtins._lib import streams

    data = bytes(range(256)) * 97  # 24,832 bytes: three windows of 8 KiB and a tail
    (tmp_path / "f").write_bytes(data)
    reader = streams.read_ahead(io.FileIO(tmp_path / "f"), 3000)
    assert isinstance(reader, streams.FileChunks)
    reader.WINDOW = 8192
    got = b""
    while chunk := reader.read_chunk():
        assert len(chunk) <= 3000
        got += bytes(chunk)
    assert got == data
    reader.close()
    again = streams.read_ahead(io.FileIO(tmp_path / "f"))
    again.WINDOW = 8192
    assert again.read() == data  # read/readinto cross windows too
    again.close()
    (tmp_path / "empty").write_bytes(b"")
    assert streams.read_ahead(io.FileIO(tmp_path / "empty")).read_chunk() == b""
