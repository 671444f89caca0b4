"""A page of another origin, in a real headless Chromium, against a loopback node without
tokens (the origin guard is all that stands between it and the node): it tries to publish a
layer, give a function a public URL (AuthType NONE), change a URL's auth, provision
concurrency and read a private object through anonymous S3 with a bucket CORS rule that allows
every origin. The node ends unchanged, the private object unread; a public object is readable,
as its ACL and the CORS rule say."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import httpx
import pytest
from browser_helpers import chromium, one_page_site
from conftest import make_zip, start_server, stop_server

EVIL = "evil.test"
ROLE = "arn:aws:iam::000000000000:role/xsite"
LAYER = base64.b64encode(make_zip({"python/planted.py": "X = 1\n"})).decode()

ATTACK = """<!doctype html><meta charset="utf-8"><title>attack</title>
<iframe name="sink"></iframe>
<form id="f" method="POST" target="sink" enctype="text/plain"
      action="NODE/2021-10-31/functions/fn/url"><input name='{"AuthType": "NONE", "x": "'
      value='"}'></form>
<script>
const node = "NODE";
const settle = (p) => p.then(async (r) => r.type + ":" + r.status + ":" +
  (r.type === "opaque" ? "" : (await r.text()).slice(0, 80)), (e) => "error:" + e.name);
window.results = {};
(async () => {
  const sink = new Promise((ok) => document.querySelector("iframe").addEventListener("load", ok));
  document.getElementById("f").submit();
  const layer = JSON.stringify({Content: {ZipFile: "LAYER"}});
  const url = JSON.stringify({AuthType: "NONE"});
  const tries = {
    layer_plain: fetch(node + "/2018-10-31/layers/planted/versions", {method: "POST",
      mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: layer}),
    layer_blob: fetch(node + "/2018-10-31/layers/planted/versions", {method: "POST",
      mode: "no-cors", body: new Blob([layer])}),
    layer_json: fetch(node + "/2018-10-31/layers/planted/versions", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: layer}),
    url_plain: fetch(node + "/2021-10-31/functions/fn/url", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: url}),
    url_update: fetch(node + "/2021-10-31/functions/iam/url", {method: "PUT",
      headers: {"Content-Type": "application/json"}, body: url}),
    provisioned: fetch(node + "/2019-09-30/functions/fn/provisioned-concurrency?Qualifier=1",
      {method: "PUT", headers: {"Content-Type": "application/json"},
       body: JSON.stringify({ProvisionedConcurrentExecutions: 1})}),
    private_object: fetch(node + "/xsite-bucket/private.txt"),
    private_listing: fetch(node + "/xsite-bucket"),
    public_object: fetch(node + "/xsite-bucket/public.txt"),
  };
  for (const [k, p] of Object.entries(tries)) window.results[k] = await settle(p);
  await sink;
  window.finished = true;
})();
</script>"""


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("xsite5") / "data")
    try:
        lam = srv.lambda_client()
        for name in ("fn", "iam"):
            lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                                Handler="handler.handler", Code={"ZipFile": make_zip(
                                    {"handler.py": "def handler(e, c):\n    return 'hi'\n"})})
        lam.publish_version(FunctionName="fn")
        lam.create_function_url_config(FunctionName="iam", AuthType="AWS_IAM")
        s3 = boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1",
                          **_keys(srv.data_dir / "credentials"))
        s3.create_bucket(Bucket="xsite-bucket")
        s3.put_bucket_cors(Bucket="xsite-bucket", CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT", "POST"],
             "AllowedHeaders": ["*"]}]})
        s3.put_object(Bucket="xsite-bucket", Key="private.txt", Body=b"the secret")
        s3.put_object(Bucket="xsite-bucket", Key="public.txt", Body=b"for all", ACL="public-read")
        yield srv
    finally:
        stop_server(srv)


def _keys(path: Path) -> dict[str, str]:
    import configparser

    c = configparser.ConfigParser()
    c.read(path)
    return {"aws_access_key_id": c["default"]["aws_access_key_id"],
            "aws_secret_access_key": c["default"]["aws_secret_access_key"]}


@pytest.fixture(scope="module")
def evil_site(node):
    with one_page_site(ATTACK.replace("NODE", node.url).replace("LAYER", LAYER).encode()) as port:
        yield f"http://{EVIL}:{port}"


def test_a_page_of_another_origin_changes_nothing_and_reads_no_private_object(node, evil_site):
    with chromium(EVIL) as b:
        page = b.new_context().new_page()
        page.goto(f"{evil_site}/attack.html")
        page.wait_for_function("window.finished === true", timeout=30_000)
        results = page.evaluate("window.results")
    assert "the secret" not in json.dumps(results)
    assert not results["private_object"].startswith("basic:200"), results
    assert not results["private_listing"].startswith("basic:200"), results
    assert results["public_object"] == "cors:200:for all", results  # CORS works where allowed
    for k in ("layer_json", "url_update", "provisioned"):
        assert results[k].startswith("error:"), (k, results)  # refused at the preflight
    lam = node.lambda_client()
    assert httpx.get(f"{node.url}/2018-10-31/layers").json()["Layers"] == []
    assert lam.list_function_url_configs(FunctionName="fn")["FunctionUrlConfigs"] == []
    assert lam.get_function_url_config(FunctionName="iam")["AuthType"] == "AWS_IAM"
    r = httpx.get(f"{node.url}/2019-09-30/functions/fn/provisioned-concurrency?Qualifier=1")
    assert r.status_code == 404, r.text
    refused = node.log().count("cross-site request from origin")
    assert refused >= 4, node.log()[-3000:]
