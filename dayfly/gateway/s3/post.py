"""POST Object: a browser uploads a file with an HTML form (boto3's generate_presigned_post).

The form carries a policy (base64 JSON: an expiration and conditions) signed with SigV4 by an
access key's owner, who is then the uploader. Checked in this order, as S3 does:
1. the form is well formed and has a `key` and one `file` (form.py);
2. the signature over the policy (x-amz-algorithm AWS4-HMAC-SHA256, x-amz-credential for
   service s3, x-amz-date of the credential's day, x-amz-signature); SigV2 forms are refused;
3. the policy: not expired; every condition holds (exact matches `{"f": v}` and `["eq", "$f",
   v]`, `["starts-with", "$f", prefix]` (each value of a Content-Type list), `["content-length-
   range", min, max]` on the file's size); every form field but x-amz-signature, file, policy
   and x-ignore-* is named by a condition;
4. the uploader may write the key (access.authorize; a function key: its scope), and a public
   `acl` is not blocked;
5. the file is stored as PutObject stores a body; too small or too large a file is removed.
A form without a policy is an anonymous upload: only a bucket policy granting s3:PutObject to
"*" lets it in. The answer follows success_action_redirect (303) or success_action_status
(200, 201 with a PostResponse document, 204 by default).
"""

from __future__ import annotations

import base64
import calendar
import hmac
import time
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from starlette.responses import Response

from ...stores.blobs import Blob
from ...stores.s3errors import S3Error
from . import access
from .context import KEPT_HEADERS, Ctx, kept_headers, quoted, version_headers
from .form import Form, boundary_of
from .sigv4 import ALGORITHM, sign, signing_key, v2_refused
from .xml import el, xml_response

UNCHECKED = frozenset({"x-amz-signature", "file", "policy"})
STATUSES = {"200": 200, "201": 201, "204": 204}


def _policy_failed(why: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {why}")


def _authenticate(ctx: Ctx, fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """The signing key's id and the policy document, or raise."""
    if "awsaccesskeyid" in fields or "signature" in fields:
        raise v2_refused()
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise S3Error("InvalidArgument", f"Bucket POST must contain a field named '{name}'. "
                          "If it is specified, please check the order of the fields.",
                          ArgumentName=name)
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise S3Error("InvalidArgument", f"x-amz-algorithm must be {ALGORITHM}",
                      ArgumentName="x-amz-algorithm")
    parts = fields["x-amz-credential"].split("/")
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request" or not parts[0]:
        raise S3Error("InvalidArgument", "x-amz-credential is malformed",
                      ArgumentName="x-amz-credential")
    key_id, date, region = parts[:3]
    if fields["x-amz-date"][:8] != date:
        raise S3Error("InvalidArgument", "x-amz-date is not the credential's date",
                      ArgumentName="x-amz-date")
    secret = ctx.access_keys.secret(key_id) if ctx.access_keys is not None else None
    if secret is None:
        raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist "
                      "in our records.", AWSAccessKeyId=key_id[:128])
    encoded = fields["policy"]
    expected = sign(signing_key(secret, date, region), encoded)
    if not hmac.compare_digest(expected, fields["x-amz-signature"]):
        raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does not "
                      "match the signature you provided. Check your key and signing method.",
                      AWSAccessKeyId=key_id, StringToSign=encoded[:4096])
    try:
        policy = orjson.loads(base64.b64decode(encoded, validate=True))
    except ValueError:  # not base64 (or not ASCII), not JSON
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.") from None
    if not isinstance(policy, dict) or not isinstance(policy.get("conditions"), list):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Policy missing conditions.")
    return key_id, policy


def _expiration(policy: dict[str, Any]) -> float:
    raw = policy.get("expiration")
    if not isinstance(raw, str):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Policy missing expiration.")
    stamp = raw.split(".")[0].rstrip("Z")
    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value: "
                      f"'{raw[:40]}'") from None


def _conditions(policy: dict[str, Any], values: dict[str, str]) -> tuple[set[str], int, int]:
    """Check every condition on `values`; the fields they name and the length range."""
    named: set[str] = set()
    low, high = 0, -1
    for cond in policy["conditions"]:
        if isinstance(cond, dict) and len(cond) == 1:
            (name, want), = cond.items()
            op, field = "eq", name.lower().lstrip("$")
        elif isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
            if not all(isinstance(v, int) and v >= 0 for v in cond[1:]):
                raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid "
                              "content-length-range values.")
            low, high = cond[1], cond[2]
            continue
        elif (isinstance(cond, list) and len(cond) == 3 and isinstance(cond[0], str)
              and cond[0].lower() in ("eq", "starts-with") and isinstance(cond[1], str)
              and cond[1].startswith("$")):
            op, field, want = cond[0].lower(), cond[1][1:].lower(), cond[2]
        else:
            raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid Condition: "
                          f"{orjson.dumps(cond).decode()[:200]}")
        if not isinstance(want, str):
            raise S3Error("InvalidPolicyDocument", f"Invalid Policy: the value for {field[:60]} "
                          "must be a string")
        named.add(field)
        have = values.get(field, "")
        if op == "eq":
            ok = have == want
        elif field == "content-type":  # each of a list of types
            ok = all(t.strip().startswith(want) for t in have.split(","))
        else:
            ok = have.startswith(want)
        if not ok:
            raise _policy_failed(f"Policy Condition failed: {orjson.dumps(cond).decode()[:200]}")
    return named, low, high


async def post_object(ctx: Ctx) -> Response:
    form = Form(ctx.request.stream(), boundary_of(ctx.headers.get("content-type", "")))
    fields = await form.fields()
    if form.filename is None:
        raise S3Error("InvalidArgument", "POST requires exactly one file upload per request.",
                      ArgumentName="file")
    if "key" not in fields:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it "
                      "is specified, please check the order of the fields.", ArgumentName="key")
    key = fields["key"].replace("${filename}", form.filename.rsplit("/", 1)[-1])
    values = {**fields, "bucket": ctx.bucket, "key": key}
    low, high = 0, -1
    principal = grant = None
    if "policy" in fields:
        key_id, policy = _authenticate(ctx, fields)
        if time.time() > _expiration(policy):
            raise _policy_failed("Policy expired.")
        named, low, high = _conditions(policy, values)
        extra = sorted(f for f in fields if f not in named and f not in UNCHECKED
                       and not f.startswith("x-ignore-"))
        if extra:
            raise _policy_failed(f"Extra input fields: {extra[0][:60]}")
        principal = ctx.access_keys.owner(key_id)
        grant = ctx.key_scopes(key_id) if ctx.key_scopes is not None else None
    elif "x-amz-signature" in fields or "x-amz-credential" in fields:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'policy' to "
                      "be signed", ArgumentName="policy")
    if grant is not None:
        access.require(grant, ctx.bucket, "write")
    known = ctx.access
    access.authorize(known.get(ctx.bucket), known.object_acl(ctx.bucket, key), principal,
                     "post_object", ctx.bucket, key)
    acl = access.canned(fields.get("acl"))
    access.check_public_acl(known.get(ctx.bucket), acl)
    headers = kept_headers((n, v) for n, v in fields.items()
                           if n.startswith("x-amz-meta-") or n in KEPT_HEADERS)
    if "content-type" not in headers and form.file_type:
        headers["content-type"] = form.file_type

    def size_ok(blob: Blob) -> None:
        if high >= 0 and blob.size > high:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                          "size", ProposedSize=str(blob.size), MaxSizeAllowed=str(high))
        if blob.size < low:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum "
                          "allowed size", ProposedSize=str(blob.size), MinSizeAllowed=str(low))
    info = await ctx.store.put_object(ctx.bucket, key, form.file(), headers=headers,
                                      verify=size_ok, origin=ctx.origin())
    await known.set_object_acl(ctx.bucket, key, acl)
    location = f"/{ctx.bucket}/{quote(key)}"
    out = {"etag": quoted(info.etag), "location": location, **version_headers(info)}
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        query = urlencode({"bucket": ctx.bucket, "key": key, "etag": quoted(info.etag)})
        return Response(status_code=303, headers={
            **out, "location": redirect + ("&" if "?" in redirect else "?") + query})
    status = STATUSES.get(fields.get("success_action_status", ""), 204)
    if status == 201:
        return xml_response("PostResponse", el("Location", location), el("Bucket", ctx.bucket),
                            el("Key", key), el("ETag", quoted(info.etag)), status=201,
                            headers=out)
    return Response(status_code=status, headers=out)
