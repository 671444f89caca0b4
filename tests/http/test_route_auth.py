"""Route auth against a real `dayfly up` that requires API tokens: `none` is public, `token`
takes a dayfly API token as a Bearer (nothing else), `jwt` takes RS256/ES256 JWTs checked
against a JWKS file or URL; forged, expired, mis-addressed and alg-confused tokens are 401 and
never reach the handler."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from conftest import start_server, stop_server
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from http_helpers import deploy, unique

ISSUER, AUDIENCE = "https://issuer.example", "dayfly-tests"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _n(x: int) -> str:
    return _b64(x.to_bytes((x.bit_length() + 7) // 8, "big"))


def mint(key, kid: str, alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now + 300, "iat": now,
            "scope": "read write", **claims}
    head = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    signed = f"{head}.{_b64(json.dumps(body).encode())}".encode()
    if alg == "RS256":
        sig = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    elif alg == "HS256":  # key: bytes, the HMAC secret
        h = hmac.HMAC(key, hashes.SHA256())
        h.update(signed)
        sig = h.finalize()
    else:
        sig = b""
    return f"{signed.decode()}.{_b64(sig)}"


@pytest.fixture(scope="module")
def keys():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = rsa_key.public_key().public_numbers()
    epub = ec_key.public_key().public_numbers()
    jwks_rsa = {"keys": [{"kty": "RSA", "kid": "r1", "alg": "RS256", "use": "sig",
                          "n": _n(pub.n), "e": _n(pub.e)}]}
    jwks_ec = {"keys": [{"kty": "EC", "kid": "e1", "crv": "P-256", "alg": "ES256",
                         "x": _n(epub.x), "y": _n(epub.y)}]}
    return {"rsa": rsa_key, "ec": ec_key, "other": other, "jwks_rsa": jwks_rsa,
            "jwks_ec": jwks_ec}


@pytest.fixture(scope="module")
def jwks_url(keys) -> Iterator[str]:
    """The EC JWKS served over HTTP, as an identity provider would."""
    doc = json.dumps(keys["jwks_ec"]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(doc)))
            self.end_headers()
            self.wfile.write(doc)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/jwks.json"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def node(tmp_path_factory, keys, jwks_url):
    """A node with an API token (so its API needs one) and three functions' routes."""
    data = tmp_path_factory.mktemp("auth") / "data"
    srv = start_server(data)
    try:
        token = httpx.post(f"{srv.url}/dayfly/v1/tokens", json={"description": "t"}).json()
        token = token.get("token") or token.get("Token") or token["secret"]
        jwks_file = data.parent / "jwks.json"
        jwks_file.write_text(json.dumps(keys["jwks_rsa"]))
        import boto3
        from botocore.config import Config
        lam = boto3.client("lambda", endpoint_url=srv.url, region_name="us-east-1",
                           aws_access_key_id=token, aws_secret_access_key="x",
                           config=Config(retries={"max_attempts": 1}, read_timeout=120))
        tag = unique("auth")
        deploy(lam, f"{tag}-open", f"""
            [http]
            routes = ["GET /{tag}/open"]
        """)
        deploy(lam, f"{tag}-tok", f"""
            [http]
            auth = "token"
            routes = ["GET /{tag}/tok"]
        """)
        deploy(lam, f"{tag}-jwt", f"""
            [http]
            auth = "jwt"
            routes = ["GET /{tag}/jwt"]
            jwt = {{ issuer = "{ISSUER}", audiences = ["{AUDIENCE}"], jwks = "{jwks_file}" }}
        """)
        deploy(lam, f"{tag}-jwtu", f"""
            [http]
            auth = "jwt"
            routes = ["GET /{tag}/jwtu"]
            jwt = {{ issuer = "{ISSUER}", audiences = ["{AUDIENCE}"], jwks = "{jwks_url}" }}
        """)
        yield srv, tag, token
    finally:
        stop_server(srv)


def test_public_route_needs_no_token_but_the_api_does(node):
    srv, tag, _ = node
    r = httpx.get(f"{srv.url}/{tag}/open")
    assert r.status_code == 200 and r.json()["routeKey"] == f"GET /{tag}/open"
    assert httpx.get(f"{srv.url}/2015-03-31/functions").status_code == 401


def test_token_route(node):
    srv, tag, token = node
    url = f"{srv.url}/{tag}/tok"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and ok.json()["routeKey"] == f"GET /{tag}/tok"
    # the token as a SigV4 access key id (the API accepts that from boto3) is no route's
    sigv4 = (f"AWS4-HMAC-SHA256 Credential={token}/20260101/us-east-1/lambda/aws4_request, "
             "SignedHeaders=host, Signature=00")
    assert httpx.get(url, headers={"Authorization": sigv4}).status_code == 401
    # nor a node credential of cluster mode, nor the token in the URL
    node_cred = httpx.get(url, headers={"Authorization": f"DAYFLY-NODE {token}"})
    assert node_cred.status_code in (401, 403) and "routeKey" not in node_cred.text
    assert httpx.get(f"{url}?token={token}").status_code == 401


def test_s3_signature_on_a_route_path_goes_to_s3_not_the_function(node):
    srv, tag, _ = node
    signed = ("AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/s3/aws4_request, "
              "SignedHeaders=host, Signature=00")
    r = httpx.get(f"{srv.url}/{tag}/open", headers={"Authorization": signed})
    assert r.status_code in (400, 403) and "<Error>" in r.text  # S3's own XML refusal
    assert "routeKey" not in r.text


def test_jwt_route_with_a_jwks_file(node, keys):
    srv, tag, token = node
    url = f"{srv.url}/{tag}/jwt"
    good = mint(keys["rsa"], "r1")
    r = httpx.get(url, headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 200, r.text
    event = r.json()
    APIGatewayProxyEventV2Model.model_validate(event)
    jwt_ctx = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_ctx["claims"]["sub"] == "user-1" and jwt_ctx["scopes"] == ["read", "write"]
    forged = {
        "none": httpx.get(url),
        "api token": httpx.get(url, headers={"Authorization": f"Bearer {token}"}),
        "other key": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['other'], 'r1')}"}),
        "expired": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['rsa'], 'r1', exp=int(time.time()) - 3600)}"}),
        "audience": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['rsa'], 'r1', aud='someone-else')}"}),
        "issuer": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['rsa'], 'r1', iss='https://evil')}"}),
        "not yet": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['rsa'], 'r1', nbf=int(time.time()) + 3600)}"}),
        "alg none": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(None, 'r1', alg='none')}"}),
        "unknown kid": httpx.get(url, headers={
            "Authorization": f"Bearer {mint(keys['rsa'], 'zz')}"}),
        "tampered": httpx.get(url, headers={"Authorization": "Bearer " + good.replace(
            good.split(".")[1], _b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "admin",
                                                 "exp": int(time.time()) + 300}).encode()))}),
    }
    # HS256 signed with the public key's PEM as the secret (the classic alg confusion)
    pem = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    forged["hs256 confusion"] = httpx.get(url, headers={
        "Authorization": f"Bearer {mint(pem, 'r1', alg='HS256')}"})
    for what, resp in forged.items():
        assert resp.status_code == 401, (what, resp.text)
        assert "routeKey" not in resp.text, what


def test_jwt_route_with_a_jwks_url_and_es256(node, keys):
    srv, tag, _ = node
    url = f"{srv.url}/{tag}/jwtu"
    ok = httpx.get(url, headers={"Authorization": f"Bearer {mint(keys['ec'], 'e1', 'ES256')}"})
    assert ok.status_code == 200, ok.text
    # an RSA token against the EC key set: its kid is unknown there
    bad = httpx.get(url, headers={"Authorization": f"Bearer {mint(keys['rsa'], 'r1')}"})
    assert bad.status_code == 401
    wrong_alg = httpx.get(url, headers={
        "Authorization": f"Bearer {mint(keys['rsa'], 'e1', 'RS256')}"})
    assert wrong_alg.status_code == 401
