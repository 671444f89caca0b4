"""Browsers and the S3 endpoint (issue 17, point 2): bucket CORS rules (Put/Get/DeleteBucketCors,
preflights answered by them, CORS headers on actual responses) and POST Object uploads with a
signed policy (boto3's generate_presigned_post), every policy condition tried; then a real
headless Chromium: a page from another origin uploads a file with a presigned POST form and
reads it back with a fetch the bucket's CORS rules allow, and a page of an origin they do not
name is blocked."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest
from botocore.exceptions import ClientError
from browser_helpers import chromium, one_page_site
from s3_helpers import (
    EMPTY_SHA256,
    aws_cli,
    credentials,
    error_code,
    s3_client,
    sign,
    status,
    xml_error,
)

SITE, EVIL = "photos.test", "evil.test"  # both resolved to 127.0.0.1 by Chromium's rules
RULES = {"CORSRules": [
    {"ID": "site", "AllowedOrigins": ["http://photos.test:*"], "AllowedMethods": ["GET", "POST",
                                                                                "PUT"],
     "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag", "x-amz-request-id"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET"],
     "AllowedHeaders": ["x-amz-*"]}]}


@pytest.fixture(scope="module")
def s3(server):
    return s3_client(server)


@pytest.fixture(scope="module")
def photos(s3):
    s3.create_bucket(Bucket="photos")
    s3.put_bucket_cors(Bucket="photos", CORSConfiguration=RULES)
    return "photos"


def raw_put(server, path: str, body: bytes) -> httpx.Response:
    key_id, secret = credentials(server.data_dir)
    url = f"{server.url}{path}"
    signed = sign("PUT", url, key_id, secret, hashlib.sha256(body).hexdigest())
    return httpx.put(url, content=body, headers=signed.headers)


def preflight(server, path: str, origin: str, method: str, headers: str = "") -> httpx.Response:
    h = {"origin": origin, "access-control-request-method": method}
    if headers:
        h["access-control-request-headers"] = headers
    return httpx.options(f"{server.url}{path}", headers=h)


def test_cors_configuration_round_trip(s3, photos):
    rules = s3.get_bucket_cors(Bucket=photos)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["http://photos.test:*"]
    assert rules[0]["AllowedMethods"] == ["GET", "POST", "PUT"]
    assert rules[0]["ExposeHeaders"] == ["ETag", "x-amz-request-id"]
    assert rules[0]["MaxAgeSeconds"] == 600 and rules[0]["ID"] == "site"
    s3.create_bucket(Bucket="no-cors")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket="no-cors")
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchCORSConfiguration", 404)
    s3.put_bucket_cors(Bucket="no-cors", CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})
    s3.delete_bucket_cors(Bucket="no-cors")
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket="no-cors")


@pytest.mark.parametrize(("body", "code"), [
    (b"<CORSConfiguration><CORSRule>", "MalformedXML"),
    (b"<CORSConfiguration></CORSConfiguration>", "MalformedXML"),
    (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
     b"</CORSConfiguration>", "MalformedXML"),
    (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH"
     b"</AllowedMethod></CORSRule></CORSConfiguration>", "InvalidRequest"),
    (b"<CORSConfiguration><CORSRule><AllowedOrigin>http://*.*.com</AllowedOrigin>"
     b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>", "InvalidRequest"),
    (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
     b"</AllowedMethod><MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>",
     "MalformedXML"),
    (b"<CORSConfiguration><Rule/></CORSConfiguration>", "MalformedXML"),
], ids=["truncated", "no-rules", "no-origin", "method", "two-wildcards", "max-age", "element"])
def test_malformed_cors_is_a_400(server, photos, body, code):
    r = raw_put(server, f"/{photos}?cors", body)
    assert r.status_code == 400, r.text
    assert xml_error(r)["Code"] == code


def test_preflights_are_answered_by_the_rules(server, s3, photos):
    r = preflight(server, f"/{photos}/a.jpg", "http://photos.test:8000", "PUT",
                  "Content-Type, X-Amz-Meta-Tag")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "http://photos.test:8000"
    assert r.headers["access-control-allow-methods"] == "GET, POST, PUT"
    assert r.headers["access-control-allow-headers"] == "content-type, x-amz-meta-tag"
    assert r.headers["access-control-max-age"] == "600"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    # the second rule: its origin pattern, GET only, x-amz-* headers only
    ok = preflight(server, f"/{photos}/a.jpg", "https://cdn.example.org", "GET", "x-amz-date")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == \
        "https://cdn.example.org"
    for origin, method, headers in (("http://evil.test", "GET", ""),
                                    ("https://cdn.example.org", "PUT", ""),
                                    ("https://cdn.example.org", "GET", "authorization"),
                                    ("http://photos.test:8000", "DELETE", "")):
        r = preflight(server, f"/{photos}/a.jpg", origin, method, headers)
        assert r.status_code == 403, (origin, method, r.text)
        assert xml_error(r)["Code"] == "AccessForbidden"
        assert "access-control-allow-origin" not in r.headers
    s3.create_bucket(Bucket="cors-off")
    r = preflight(server, "/cors-off/a", "http://photos.test:8000", "GET")
    assert r.status_code == 403 and "not enabled" in xml_error(r)["Message"]
    r = httpx.options(f"{server.url}/{photos}/a", headers={"origin": "http://photos.test:1"})
    assert r.status_code == 400, r.text


def test_actual_responses_carry_cors_headers(server, s3, photos):
    s3.put_object(Bucket=photos, Key="seen.txt", Body=b"seen")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": photos, "Key": "seen.txt"})
    r = httpx.get(url, headers={"origin": "http://photos.test:8000"})
    assert r.status_code == 200 and r.content == b"seen"
    assert r.headers["access-control-allow-origin"] == "http://photos.test:8000"
    assert r.headers["access-control-expose-headers"] == "ETag, x-amz-request-id"
    assert "Origin" in r.headers["vary"]
    r = httpx.get(url, headers={"origin": "http://evil.test"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in httpx.get(url).headers


def presigned_post(s3, bucket: str, key: str, **kw):
    return s3.generate_presigned_post(bucket, key, **kw)


def post(post_data: dict, content: bytes = b"photo bytes", filename: str = "cat.jpg",
         extra: dict | None = None, drop: str | None = None) -> httpx.Response:
    fields = {**post_data["fields"], **(extra or {})}
    if drop:
        fields.pop(drop)
    return httpx.post(post_data["url"], data=fields,
                      files={"file": (filename, content, "image/jpeg")})


def test_presigned_post_uploads(s3, photos):
    p = presigned_post(s3, photos, "uploads/${filename}",
                       Fields={"Content-Type": "image/jpeg", "x-amz-meta-album": "cats"},
                       Conditions=[["starts-with", "$key", "uploads/"],
                                   {"Content-Type": "image/jpeg"},
                                   {"x-amz-meta-album": "cats"},
                                   ["content-length-range", 1, 1024]])
    r = post(p)
    assert r.status_code == 204, r.text
    assert r.headers["etag"] == f'"{hashlib.md5(b"photo bytes").hexdigest()}"'
    head = s3.head_object(Bucket=photos, Key="uploads/cat.jpg")
    assert head["ContentType"] == "image/jpeg" and head["Metadata"] == {"album": "cats"}
    assert s3.get_object(Bucket=photos, Key="uploads/cat.jpg")["Body"].read() == b"photo bytes"
    # success_action_status 201: a PostResponse document; redirect: 303 to it
    p = presigned_post(s3, photos, "doc.txt", Fields={"success_action_status": "201"},
                       Conditions=[{"success_action_status": "201"}])
    r = post(p, b"doc")
    assert r.status_code == 201 and "<Key>doc.txt</Key>" in r.text, r.text
    p = presigned_post(s3, photos, "r.txt", Fields={
        "success_action_redirect": "http://photos.test/done"},
        Conditions=[{"success_action_redirect": "http://photos.test/done"}])
    r = post(p, b"r")
    assert r.status_code == 303 and r.headers["location"].startswith(
        "http://photos.test/done?bucket=photos&key=r.txt&etag="), r.headers
    # a big file streams through (not held whole): 20 MiB
    big = bytes(range(256)) * (20 * 4096)
    p = presigned_post(s3, photos, "big.bin")
    assert post(p, big).status_code == 204
    assert s3.head_object(Bucket=photos, Key="big.bin")["ETag"] == \
        f'"{hashlib.md5(big).hexdigest()}"'


def test_every_policy_condition_is_checked(s3, photos):
    conditions = [["starts-with", "$key", "uploads/"], {"Content-Type": "image/jpeg"},
                  ["content-length-range", 5, 20]]
    p = presigned_post(s3, photos, "uploads/x.jpg", Fields={"Content-Type": "image/jpeg"},
                       Conditions=conditions)

    def refused(r: httpx.Response, code: str, words: str = "") -> None:
        assert r.status_code in (400, 403), r.text
        assert xml_error(r)["Code"] == code, r.text
        assert words in xml_error(r)["Message"], r.text
    assert post(p, b"just right").status_code == 204
    refused(post(p, b"tiny"), "EntityTooSmall")
    refused(post(p, b"x" * 21), "EntityTooLarge")
    refused(post(p, extra={"key": "elsewhere/x.jpg"}), "AccessDenied", "Condition failed")
    refused(post(p, extra={"Content-Type": "text/html"}), "AccessDenied", "Condition failed")
    refused(post(p, extra={"x-amz-meta-extra": "1"}), "AccessDenied", "Extra input fields")
    refused(post(p, extra={"acl": "public-read"}), "AccessDenied", "Extra input fields")
    refused(post(p, drop="Content-Type"), "AccessDenied", "Condition failed")
    refused(post(p, drop="key"), "InvalidArgument")
    refused(post(p, drop="x-amz-signature"), "InvalidArgument")
    refused(post(p, extra={"x-amz-signature": "0" * 64}), "SignatureDoesNotMatch")
    # a policy edited by the page no longer matches its signature
    doc = json.loads(base64.b64decode(p["fields"]["policy"]))
    doc["conditions"] = [c for c in doc["conditions"] if "content-length-range" not in c]
    refused(post(p, b"x" * 100, extra={"policy": base64.b64encode(json.dumps(doc).encode())
                                       .decode()}), "SignatureDoesNotMatch")
    expired = presigned_post(s3, photos, "uploads/late.jpg", ExpiresIn=1)
    time.sleep(2)  # the policy's expiration is whole seconds: wait it out (no event to gate on)
    refused(post(expired), "AccessDenied", "Policy expired")
    other_user = s3.generate_presigned_post("no-such-bucket-x", "k")
    r = post(other_user)
    assert r.status_code in (403, 404), r.text
    # no file, and a body that is no form
    r = httpx.post(p["url"], data=p["fields"])
    assert r.status_code == 400, r.text
    r = httpx.post(p["url"], content=b"--x\r\nbroken", headers={
        "content-type": "multipart/form-data; boundary=x"})
    assert xml_error(r)["Code"] == "MalformedPOSTRequest"
    v2 = httpx.post(p["url"], data={"key": "k", "AWSAccessKeyId": "a", "policy": "e30=",
                                    "signature": "s"}, files={"file": ("f", b"x")})
    assert xml_error(v2)["Code"] == "InvalidRequest"
    assert s3.list_objects_v2(Bucket=photos, Prefix="elsewhere/").get("KeyCount") == 0


def test_presigned_post_respects_the_signers_rights(server, s3, photos):
    r = httpx.post(f"{server.url}/dayfly/v1/keys", json={"user": "mallory"})
    mallory = s3_client(server, r.json()["id"], r.json()["secret"])
    p = mallory.generate_presigned_post(photos, "planted.txt")
    r = post(p, b"planted")
    assert r.status_code == 403 and xml_error(r)["Code"] == "AccessDenied", r.text
    # an anonymous form (no policy) needs a bucket policy that lets anyone write
    r = httpx.post(f"{server.url}/{photos}", data={"key": "anon.txt"},
                   files={"file": ("a", b"anon")})
    assert r.status_code == 403 and xml_error(r)["Code"] == "AccessDenied", r.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=photos, Key="planted.txt")


# a real browser

PAGE = """<!doctype html><meta charset="utf-8"><title>upload</title>
<script>
window.run = async (post, readUrl) => {
  const out = {};
  const form = new FormData();
  for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
  form.append("file", new Blob(["hello from a browser"], {type: "text/plain"}), "hello.txt");
  try {
    const r = await fetch(post.url, {method: "POST", body: form});
    out.post = r.status + ":" + (r.headers.get("ETag") || "");
  } catch (e) { out.post = "error:" + e.name; }
  try {  // a custom header: the browser sends a preflight first
    const r = await fetch(readUrl, {headers: {"X-Requested-By": "page"}});
    out.read = r.status + ":" + await r.text();
  } catch (e) { out.read = "error:" + e.name; }
  return out;
};
</script>"""


@pytest.fixture(scope="module")
def site():
    """The page's own origin: a little HTTP server on another port."""
    with one_page_site(PAGE.encode()) as port:
        yield port


@pytest.fixture(scope="module")
def browser():
    with chromium(SITE, EVIL) as b:
        yield b


def test_a_browser_uploads_with_a_presigned_post_and_reads_back_by_cors(s3, photos, site,
                                                                        browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://{SITE}:{site}/upload.html")
        form = s3.generate_presigned_post(photos, "browser/${filename}",
                                          Conditions=[["starts-with", "$key", "browser/"]])
        read = s3.generate_presigned_url("get_object", Params={"Bucket": photos,
                                                               "Key": "browser/hello.txt"})
        out = page.evaluate("([p, u]) => window.run(p, u)", [form, read])
        etag = hashlib.md5(b"hello from a browser").hexdigest()
        assert out == {"post": f'204:"{etag}"', "read": "200:hello from a browser"}, out
        assert s3.get_object(Bucket=photos, Key="browser/hello.txt")["Body"].read() == \
            b"hello from a browser"
        # a page of an origin the rules do not name: its read is blocked at the preflight
        page.goto(f"http://{EVIL}:{site}/upload.html")
        form = s3.generate_presigned_post(photos, "evil/${filename}")
        out = page.evaluate("([p, u]) => window.run(p, u)", [form, read])
        assert out["read"] == "error:TypeError", out
        assert out["post"] == "error:TypeError", out  # sent, but its answer hidden from it
    finally:
        context.close()


def test_unsigned_requests_reach_s3_not_the_json_api(server, photos):
    r = httpx.get(f"{server.url}/{photos}/browser/hello.txt")
    assert r.status_code == 403 and xml_error(r)["Code"] == "AccessDenied"
    signed = sign("GET", f"{server.url}/{photos}", *credentials(server.data_dir), EMPTY_SHA256)
    assert httpx.get(f"{server.url}/{photos}", headers=signed.headers).status_code == 200


def test_the_aws_cli_sets_and_removes_cors(server, s3, tmp_path_factory):
    aws = aws_cli(server, tmp_path_factory.mktemp("awscfg-cors"), check=True)
    aws("s3", "mb", "s3://cli-cors")
    aws("s3api", "put-bucket-cors", "--bucket", "cli-cors", "--cors-configuration", json.dumps(
        {"CORSRules": [{"AllowedOrigins": ["http://app.test"], "AllowedMethods": ["GET"]}]}))
    got = json.loads(aws("s3api", "get-bucket-cors", "--bucket", "cli-cors").stdout)
    assert got["CORSRules"][0]["AllowedOrigins"] == ["http://app.test"]
    assert preflight(server, "/cli-cors/k", "http://app.test", "GET").status_code == 200
    bad = aws("s3api", "put-bucket-cors", "--bucket", "cli-cors", "--cors-configuration",
              json.dumps({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"],
                                         "AllowedHeaders": ["a*b*"]}]}), check=False)
    assert bad.returncode != 0 and "InvalidRequest" in bad.stderr
    aws("s3api", "delete-bucket-cors", "--bucket", "cli-cors")
    assert preflight(server, "/cli-cors/k", "http://app.test", "GET").status_code == 403
