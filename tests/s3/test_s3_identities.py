"""Who may do what on the S3 endpoint (issue 17, point 3): keys of two users (the default user
`dayfly` and `bob`), bucket owners, canned ACLs, bucket policies, public access blocks, and
function keys' scopes on top; anonymous requests answered by S3's rules (point 2). Each rule is
also tried as an attacker: no signature, a forged one, SigV2, another user's key, a function
key outside its scope, an S3 signature on a Lambda route."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import httpx
import pytest
from botocore.exceptions import ClientError
from conftest import make_zip
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


@pytest.fixture(scope="module")
def alice(server):  # the default user: the key written on first start
    return s3_client(server)


def new_key(server, user: str) -> tuple[str, str]:
    r = httpx.post(f"{server.url}/dayfly/v1/keys", json={"user": user, "description": user})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["secret"]


@pytest.fixture(scope="module")
def bob_key(server):
    return new_key(server, "bob")


@pytest.fixture(scope="module")
def bob(server, bob_key):
    return s3_client(server, *bob_key)


def denied(call) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    code = error_code(exc.value)  # a HEAD's answer has no body: boto3 names it by status
    assert (code if code != "403" else "AccessDenied", status(exc.value)) == (
        "AccessDenied", 403), exc.value


def anonymous(server, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{server.url}{path}", **kw)


def refused_xml(r: httpx.Response, code: str = "AccessDenied", status_code: int = 403) -> None:
    assert r.status_code == status_code, r.text
    assert r.headers["content-type"].startswith("application/xml"), r.headers
    assert xml_error(r)["Code"] == code, r.text


def test_keys_belong_to_users_and_the_cli_makes_them(server):
    p = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "keys", "create", "--user",
                        "carol", "--json", "--endpoint", server.url], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    key = json.loads(p.stdout)
    assert key["user"] == "carol"
    listed = {k["id"]: k["user"] for k in httpx.get(f"{server.url}/dayfly/v1/keys").json()["keys"]}
    assert listed[key["id"]] == "carol"
    assert listed[credentials(server.data_dir)[0]] == "dayfly"  # the first key: default user
    bad = httpx.post(f"{server.url}/dayfly/v1/keys", json={"user": "Bad User!"})
    assert bad.status_code == 400, bad.text
    ls = subprocess.run([sys.executable, "-m", "dayfly.cli.main", "keys", "ls", "--endpoint",
                         server.url], capture_output=True, text=True, timeout=60)
    assert "carol" in ls.stdout and "USER" in ls.stdout


def test_another_users_bucket_is_denied(alice, bob):
    alice.create_bucket(Bucket="alice-private")
    alice.put_object(Bucket="alice-private", Key="secret.txt", Body=b"alice's")
    denied(lambda: bob.get_object(Bucket="alice-private", Key="secret.txt"))
    denied(lambda: bob.head_object(Bucket="alice-private", Key="secret.txt"))
    denied(lambda: bob.list_objects_v2(Bucket="alice-private"))
    denied(lambda: bob.put_object(Bucket="alice-private", Key="planted", Body=b"x"))
    denied(lambda: bob.delete_object(Bucket="alice-private", Key="secret.txt"))
    denied(lambda: bob.delete_objects(Bucket="alice-private",
                                      Delete={"Objects": [{"Key": "secret.txt"}]}))
    denied(lambda: bob.delete_bucket(Bucket="alice-private"))
    denied(lambda: bob.put_bucket_policy(Bucket="alice-private", Policy=json.dumps(
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                        "Resource": "arn:aws:s3:::alice-private/*"}]})))
    denied(lambda: bob.put_bucket_acl(Bucket="alice-private", ACL="public-read"))
    denied(lambda: bob.get_bucket_acl(Bucket="alice-private"))
    denied(lambda: bob.put_bucket_cors(Bucket="alice-private", CORSConfiguration={
        "CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]}))
    denied(lambda: bob.copy_object(Bucket="alice-private", Key="copy",
                                   CopySource="alice-private/secret.txt"))
    denied(lambda: bob.create_multipart_upload(Bucket="alice-private", Key="mp"))
    with pytest.raises(ClientError) as exc:
        bob.create_bucket(Bucket="alice-private")
    assert (error_code(exc.value), status(exc.value)) == ("BucketAlreadyExists", 409)
    # bob's own bucket is his; he cannot copy alice's object into it either
    bob.create_bucket(Bucket="bob-own")
    bob.put_object(Bucket="bob-own", Key="mine", Body=b"bob's")
    denied(lambda: bob.copy_object(Bucket="bob-own", Key="stolen",
                                   CopySource="alice-private/secret.txt"))
    assert "bob-own" in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    assert "alice-private" not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
    assert "bob-own" not in [b["Name"] for b in alice.list_buckets()["Buckets"]]
    assert bob.list_buckets()["Owner"]["ID"] == "bob"
    denied(lambda: alice.get_object(Bucket="bob-own", Key="mine"))  # both ways
    assert alice.get_object(Bucket="alice-private", Key="secret.txt")["Body"].read() == b"alice's"


def test_unsigned_forged_and_sigv2_requests_get_s3_errors(server, alice, bob_key):
    alice.create_bucket(Bucket="attacked")
    alice.put_object(Bucket="attacked", Key="k", Body=b"private")
    # no signature: S3's XML AccessDenied (this used to fall through to the JSON API's 404)
    for method, path in (("GET", "/attacked/k"), ("HEAD", "/attacked/k"), ("GET", "/attacked"),
                         ("PUT", "/attacked/planted"), ("DELETE", "/attacked/k"),
                         ("GET", "/attacked?acl"), ("GET", "/attacked?policy")):
        r = anonymous(server, method, path, content=b"x" if method == "PUT" else None)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        if method != "HEAD":
            refused_xml(r)
    # a forged signature: alice's key id signed with another secret
    url = f"{server.url}/attacked/k"
    forged = sign("GET", url, credentials(server.data_dir)[0], "not-the-secret", EMPTY_SHA256)
    refused_xml(httpx.get(url, headers=forged.headers), "SignatureDoesNotMatch")
    # SigV2, header and query: refused by name, as S3 does
    refused_xml(httpx.get(url, headers={"authorization": f"AWS {bob_key[0]}:c2lnbmF0dXJl"}),
                "InvalidRequest", 400)
    refused_xml(httpx.get(url, params={"AWSAccessKeyId": bob_key[0], "Expires": "9999999999",
                                       "Signature": "c2ln"}), "InvalidRequest", 400)
    assert "SigV2" not in xml_error(httpx.get(url, headers={
        "authorization": "AWS x:y"}))["Message"]
    assert alice.get_object(Bucket="attacked", Key="k")["Body"].read() == b"private"
    assert [o["Key"] for o in alice.list_objects_v2(Bucket="attacked")["Contents"]] == ["k"]


def test_s3_and_anonymous_requests_never_reach_a_lambda_or_dayfly_route(server):
    key_id, secret = credentials(server.data_dir)
    # an S3 signature on the Lambda API's paths reaches the S3 endpoint (no bucket there)
    for path in ("/2015-03-31/functions/", "/dayfly/v1/keys"):
        url = f"{server.url}{path}"
        signed = sign("GET", url, key_id, secret, EMPTY_SHA256)
        r = httpx.get(url, headers=signed.headers)
        assert r.headers["content-type"].startswith("application/xml"), (path, r.text)
        assert "Functions" not in r.text and "keys" not in r.text.lower().split("<code>")[0]
    # an SigV2 header on the dayfly API: S3's refusal, not the key list
    r = httpx.get(f"{server.url}/dayfly/v1/keys", headers={"authorization": "AWS a:b"})
    refused_xml(r, "InvalidRequest", 400)
    # unsigned requests to dayfly's own prefixes stay the API's (JSON), never S3's
    r = httpx.get(f"{server.url}/2015-03-31/functions/")
    assert r.headers["content-type"].startswith("application/json")
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    r = httpx.get(f"{server.url}/metrics")
    assert not r.headers["content-type"].startswith("application/xml")
    # and the S3 XML for a bucket path: unsigned POST to a bucket is POST Object, not an API
    r = httpx.post(f"{server.url}/no-such-bucket-here", content=b"x",
                   headers={"content-type": "text/plain"})
    refused_xml(r, "MalformedPOSTRequest", 400)


def test_public_read_acls(server, alice):
    alice.create_bucket(Bucket="acl-bucket")
    alice.put_object(Bucket="acl-bucket", Key="public.txt", Body=b"for all", ACL="public-read")
    alice.put_object(Bucket="acl-bucket", Key="private.txt", Body=b"not for all")
    r = anonymous(server, "GET", "/acl-bucket/public.txt")
    assert (r.status_code, r.content) == (200, b"for all"), r.text
    assert anonymous(server, "HEAD", "/acl-bucket/public.txt").status_code == 200
    refused_xml(anonymous(server, "GET", "/acl-bucket/private.txt"))
    refused_xml(anonymous(server, "GET", "/acl-bucket"))  # the bucket itself is private
    grants = alice.get_object_acl(Bucket="acl-bucket", Key="public.txt")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/"
                        "AllUsers"}, "Permission": "READ"} in grants
    assert [g["Permission"] for g in alice.get_object_acl(
        Bucket="acl-bucket", Key="private.txt")["Grants"]] == ["FULL_CONTROL"]
    # an overwrite without an ACL is private again; PutObjectAcl makes it public
    alice.put_object(Bucket="acl-bucket", Key="public.txt", Body=b"v2")
    refused_xml(anonymous(server, "GET", "/acl-bucket/public.txt"))
    alice.put_object_acl(Bucket="acl-bucket", Key="public.txt", ACL="public-read")
    assert anonymous(server, "GET", "/acl-bucket/public.txt").content == b"v2"
    # a public-read bucket lists for anyone, but its private objects stay private
    alice.put_bucket_acl(Bucket="acl-bucket", ACL="public-read")
    r = anonymous(server, "GET", "/acl-bucket?list-type=2")
    assert r.status_code == 200 and "<Key>private.txt</Key>" in r.text, r.text
    refused_xml(anonymous(server, "GET", "/acl-bucket/private.txt"))
    assert any(g["Permission"] == "READ" for g in alice.get_bucket_acl(
        Bucket="acl-bucket")["Grants"])
    # an ACL document that says what a canned ACL says is taken; any other grant is refused
    owner = alice.get_bucket_acl(Bucket="acl-bucket")["Owner"]
    full = {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}
    alice.put_bucket_acl(Bucket="acl-bucket", AccessControlPolicy={"Owner": owner,
                                                                    "Grants": [full]})
    refused_xml(anonymous(server, "GET", "/acl-bucket?list-type=2"))
    with pytest.raises(ClientError) as exc:
        alice.put_bucket_acl(Bucket="acl-bucket", AccessControlPolicy={"Owner": owner, "Grants": [
            full, {"Grantee": {"Type": "CanonicalUser", "ID": "bob"}, "Permission": "WRITE"}]})
    assert error_code(exc.value) == "NotImplemented"
    with pytest.raises(ClientError) as exc:  # FULL_CONTROL for bob would be dropped: refused
        alice.put_bucket_acl(Bucket="acl-bucket", AccessControlPolicy={"Owner": owner, "Grants": [
            full, {"Grantee": {"Type": "CanonicalUser", "ID": "bob"},
                   "Permission": "FULL_CONTROL"}]})
    assert error_code(exc.value) == "NotImplemented"
    # deleting the object drops its ACL: a new object of that key is private
    alice.delete_object(Bucket="acl-bucket", Key="public.txt")
    alice.put_object(Bucket="acl-bucket", Key="public.txt", Body=b"v3")
    refused_xml(anonymous(server, "GET", "/acl-bucket/public.txt"))
    # so does DeleteObjects, and a completed multipart upload is private
    alice.put_object(Bucket="acl-bucket", Key="batch", Body=b"1", ACL="public-read")
    alice.delete_objects(Bucket="acl-bucket", Delete={"Objects": [{"Key": "batch"}]})
    alice.put_object(Bucket="acl-bucket", Key="batch", Body=b"2")
    refused_xml(anonymous(server, "GET", "/acl-bucket/batch"))
    alice.put_object_acl(Bucket="acl-bucket", Key="batch", ACL="public-read")
    up = alice.create_multipart_upload(Bucket="acl-bucket", Key="batch")["UploadId"]
    etag = alice.upload_part(Bucket="acl-bucket", Key="batch", UploadId=up, PartNumber=1,
                             Body=b"3")["ETag"]
    alice.complete_multipart_upload(Bucket="acl-bucket", Key="batch", UploadId=up,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    refused_xml(anonymous(server, "GET", "/acl-bucket/batch"))
    with pytest.raises(ClientError) as exc:
        alice.put_object(Bucket="acl-bucket", Key="rw", Body=b"x", ACL="public-read-write")
    assert error_code(exc.value) == "NotImplemented"
    with pytest.raises(ClientError) as exc:
        alice.put_object(Bucket="acl-bucket", Key="g", Body=b"x", GrantRead='uri="x"')
    assert error_code(exc.value) == "NotImplemented"


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_bucket_policies(server, alice, bob):
    alice.create_bucket(Bucket="shared-bucket")
    for key in ("pub/a.txt", "team/doc.txt", "team/secret.txt", "other.txt"):
        alice.put_object(Bucket="shared-bucket", Key=key, Body=key.encode())
    refused_xml(anonymous(server, "GET", "/shared-bucket/pub/a.txt"))
    denied(lambda: bob.get_object(Bucket="shared-bucket", Key="team/doc.txt"))
    alice.put_bucket_policy(Bucket="shared-bucket", Policy=policy(
        {"Sid": "public", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::shared-bucket/pub/*"},
        {"Sid": "team", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::bob:root"]},
         "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": "arn:aws:s3:::shared-bucket/team/*"},
        {"Sid": "list", "Effect": "Allow", "Principal": {"AWS": "bob"},
         "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::shared-bucket"},
        {"Sid": "deny", "Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "s3:*",
         "Resource": "arn:aws:s3:::shared-bucket/team/secret*"}))
    assert json.loads(alice.get_bucket_policy(Bucket="shared-bucket")["Policy"])[
        "Statement"][0]["Sid"] == "public"
    assert anonymous(server, "GET", "/shared-bucket/pub/a.txt").content == b"pub/a.txt"
    refused_xml(anonymous(server, "GET", "/shared-bucket/team/doc.txt"))
    refused_xml(anonymous(server, "PUT", "/shared-bucket/pub/new", content=b"x"))
    assert bob.get_object(Bucket="shared-bucket", Key="team/doc.txt")["Body"].read() == \
        b"team/doc.txt"
    bob.put_object(Bucket="shared-bucket", Key="team/by-bob.txt", Body=b"bob wrote")
    assert alice.get_object(Bucket="shared-bucket", Key="team/by-bob.txt")["Body"].read() == \
        b"bob wrote"
    assert "other.txt" in [o["Key"] for o in bob.list_objects_v2(
        Bucket="shared-bucket")["Contents"]]
    denied(lambda: bob.get_object(Bucket="shared-bucket", Key="other.txt"))
    denied(lambda: bob.delete_object(Bucket="shared-bucket", Key="team/doc.txt"))
    denied(lambda: bob.get_object(Bucket="shared-bucket", Key="team/secret.txt"))  # Deny wins
    denied(lambda: bob.put_object(Bucket="shared-bucket", Key="team/secret2", Body=b"x"))
    # DeleteObjects: an Allow of bucket/* lets bob delete many at once, but never past a Deny
    alice.put_bucket_policy(Bucket="shared-bucket", Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared-bucket/*"},
        {"Effect": "Deny", "Principal": {"AWS": "bob"}, "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared-bucket/team/secret*"}))
    denied(lambda: bob.delete_objects(Bucket="shared-bucket",
                                      Delete={"Objects": [{"Key": "team/secret.txt"}]}))
    bob.delete_object(Bucket="shared-bucket", Key="team/by-bob.txt")
    alice.put_bucket_policy(Bucket="shared-bucket", Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared-bucket/*"}))
    alice.put_object(Bucket="shared-bucket", Key="scratch", Body=b"x")
    bob.delete_objects(Bucket="shared-bucket", Delete={"Objects": [{"Key": "scratch"}]})
    assert "scratch" not in [o["Key"] for o in alice.list_objects_v2(
        Bucket="shared-bucket")["Contents"]]
    denied(lambda: bob.get_bucket_policy(Bucket="shared-bucket"))  # the owner's alone
    denied(lambda: bob.delete_bucket_policy(Bucket="shared-bucket"))
    # an explicit Deny applies to the owner too
    alice.put_bucket_policy(Bucket="shared-bucket", Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared-bucket/*"}))
    denied(lambda: alice.delete_object(Bucket="shared-bucket", Key="other.txt"))
    alice.delete_bucket_policy(Bucket="shared-bucket")
    alice.delete_object(Bucket="shared-bucket", Key="other.txt")
    with pytest.raises(ClientError) as exc:
        alice.get_bucket_policy(Bucket="shared-bucket")
    assert (error_code(exc.value), status(exc.value)) == ("NoSuchBucketPolicy", 404)
    denied(lambda: bob.get_object(Bucket="shared-bucket", Key="team/doc.txt"))


@pytest.mark.parametrize("document", [
    "not json", "[]", json.dumps({"Statement": []}),
    policy({"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::malformed/*"}),
    policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::malformed/*"}),
    policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::another-bucket/*"}),
    policy({"Effect": "Allow", "Principal": "*", "Action": "iam:PassRole",
            "Resource": "arn:aws:s3:::malformed/*"}),
    policy({"Effect": "Allow", "Principal": {"AWS": "bad user!"}, "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::malformed/*"}),
    policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::malformed/*",
            "Condition": {"Bool": {"aws:SecureTransport": "true"}}}),
    policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::malformed/*", "Surprise": 1}),
], ids=["text", "array", "no-statements", "effect", "no-principal", "other-bucket", "action",
        "principal", "condition", "unknown-field"])
def test_malformed_policies_are_refused(alice, document):
    with contextlib.suppress(ClientError):  # made by the first case
        alice.create_bucket(Bucket="malformed")
    with pytest.raises(ClientError) as exc:
        alice.put_bucket_policy(Bucket="malformed", Policy=document)
    assert (error_code(exc.value), status(exc.value)) == ("MalformedPolicy", 400)
    with pytest.raises(ClientError):
        alice.get_bucket_policy(Bucket="malformed")


def test_public_access_block(server, alice):
    alice.create_bucket(Bucket="blocked")
    alice.put_object(Bucket="blocked", Key="was-public", Body=b"x", ACL="public-read")
    public = policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                     "Resource": "arn:aws:s3:::blocked/*"})
    with pytest.raises(ClientError) as exc:
        alice.get_public_access_block(Bucket="blocked")
    assert error_code(exc.value) == "NoSuchPublicAccessBlockConfiguration"
    alice.put_public_access_block(Bucket="blocked", PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False})
    assert alice.get_public_access_block(Bucket="blocked")[
        "PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    denied(lambda: alice.put_object(Bucket="blocked", Key="k", Body=b"x", ACL="public-read"))
    denied(lambda: alice.put_object_acl(Bucket="blocked", Key="was-public", ACL="public-read"))
    denied(lambda: alice.put_bucket_acl(Bucket="blocked", ACL="public-read"))
    denied(lambda: alice.put_bucket_policy(Bucket="blocked", Policy=public))
    refused_xml(anonymous(server, "GET", "/blocked/was-public"))  # IgnorePublicAcls
    # RestrictPublicBuckets alone: a public policy may be put, and grants nothing
    alice.put_public_access_block(Bucket="blocked", PublicAccessBlockConfiguration={
        "RestrictPublicBuckets": True})
    alice.put_bucket_policy(Bucket="blocked", Policy=public)
    refused_xml(anonymous(server, "GET", "/blocked/k-none"))
    assert anonymous(server, "GET", "/blocked/was-public").content == b"x"  # its ACL counts
    alice.put_object_acl(Bucket="blocked", Key="was-public", ACL="private")
    refused_xml(anonymous(server, "GET", "/blocked/was-public"))  # the policy does not
    alice.put_object_acl(Bucket="blocked", Key="was-public", ACL="public-read")
    alice.delete_public_access_block(Bucket="blocked")
    assert anonymous(server, "GET", "/blocked/was-public").content == b"x"
    with pytest.raises(ClientError) as exc:
        alice.put_public_access_block(Bucket="blocked", PublicAccessBlockConfiguration={})
    assert status(exc.value) == 400


SCOPED = """
import os

def handler(event, context):
    return {"id": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"]}
"""


def test_function_keys_keep_their_scopes(server, alice):
    alice.create_bucket(Bucket="fn-data")
    alice.create_bucket(Bucket="fn-other")
    alice.put_object(Bucket="fn-data", Key="in", Body=b"readable")
    alice.put_object(Bucket="fn-other", Key="pub", Body=b"public", ACL="public-read")
    alice.put_bucket_policy(Bucket="fn-other", Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*",
         "Resource": "arn:aws:s3:::fn-other/*"}))
    r = httpx.post(f"{server.url}/dayfly/v1/functions/scoped/deploy", timeout=300,
                   content=make_zip({"handler.py": SCOPED,
                                     "dayfly.toml": 'buckets = ["fn-data:read"]\n'}),
                   headers={"content-type": "application/zip"})
    assert r.status_code == 200, r.text
    out = httpx.post(f"{server.url}/2015-03-31/functions/scoped/invocations", content=b"{}",
                     timeout=120)
    assert out.status_code == 200, out.text
    fn = s3_client(server, out.json()["id"], out.json()["secret"])
    assert fn.get_object(Bucket="fn-data", Key="in")["Body"].read() == b"readable"
    denied(lambda: fn.put_object(Bucket="fn-data", Key="w", Body=b"x"))  # read only
    # the default user owns fn-other and it is public, yet outside the scope it is denied
    denied(lambda: fn.get_object(Bucket="fn-other", Key="pub"))
    denied(lambda: fn.put_object(Bucket="fn-other", Key="w", Body=b"x"))
    denied(lambda: fn.put_bucket_policy(Bucket="fn-data", Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:*",
         "Resource": "arn:aws:s3:::fn-data/*"})))
    denied(lambda: fn.put_object_acl(Bucket="fn-data", Key="in", ACL="public-read"))


def test_the_aws_cli_manages_acls_and_policies(server, tmp_path_factory, alice):
    aws = aws_cli(server, tmp_path_factory.mktemp("awscfg-acl"), check=True)
    aws("s3", "mb", "s3://cli-acl")
    aws("s3api", "put-object", "--bucket", "cli-acl", "--key", "f", "--acl", "public-read")
    assert anonymous(server, "GET", "/cli-acl/f").status_code == 200
    acl = json.loads(aws("s3api", "get-object-acl", "--bucket", "cli-acl", "--key", "f").stdout)
    assert any(g["Permission"] == "READ" for g in acl["Grants"])
    aws("s3api", "put-bucket-policy", "--bucket", "cli-acl", "--policy", policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::cli-acl/*"}))
    refused_xml(anonymous(server, "GET", "/cli-acl/f"))  # the Deny wins over the ACL
    got = json.loads(aws("s3api", "get-bucket-policy", "--bucket", "cli-acl").stdout)
    assert json.loads(got["Policy"])["Statement"][0]["Effect"] == "Deny"
    bad = aws("s3api", "put-bucket-policy", "--bucket", "cli-acl", "--policy", "{", check=False)
    assert bad.returncode != 0 and "MalformedPolicy" in bad.stderr
    aws("s3api", "delete-bucket-policy", "--bucket", "cli-acl")
    aws("s3api", "put-public-access-block", "--bucket", "cli-acl",
        "--public-access-block-configuration", "IgnorePublicAcls=true")
    refused_xml(anonymous(server, "GET", "/cli-acl/f"))
    root = ET.fromstring(anonymous(server, "GET", "/cli-acl/f").content)
    assert root.tag == "Error"
