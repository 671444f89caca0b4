"""A bucket's access settings as S3 operations: Get/PutBucketAcl, Get/PutObjectAcl,
Get/Put/DeleteBucketPolicy, Get/Put/DeleteBucketCors, Get/Put/DeletePublicAccessBlock, and
the bucket operations that record or need an owner (ListBuckets, Create/DeleteBucket).

Only canned ACLs exist here (control/bucket_access.py): an ACL document is taken when it says
what a canned ACL says, and refused (NotImplemented) when it grants anything else.
"""

from __future__ import annotations

from starlette.responses import Response

from ...control.bucket_access import BLOCK_FIELDS
from ...stores.s3errors import S3Error
from . import access, buckets, cors, post
from .context import Ctx
from .payload import Payload
from .xml import el, parse, wrap, xml_response

XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
MAX_BODY = 64 * 1024


async def _body(ctx: Ctx, limit: int = MAX_BODY) -> bytes:
    return await Payload(ctx.request, ctx.auth, limit=limit).read(limit)


def _acl_document(owner: str, acl: str) -> Response:
    def grant(grantee: str, permission: str) -> str:
        return f"<Grant>{grantee}{el('Permission', permission)}</Grant>"
    person = el("ID", owner) + el("DisplayName", owner)
    grants = [grant(f'<Grantee {XSI} xsi:type="CanonicalUser">{person}</Grantee>',
                    "FULL_CONTROL")]
    group = {"public-read": access.ALL_USERS,
             "authenticated-read": access.AUTHENTICATED_USERS}.get(acl)
    if group:
        grants.append(grant(f'<Grantee {XSI} xsi:type="Group">{el("URI", group)}</Grantee>',
                            "READ"))
    return xml_response("AccessControlPolicy", wrap("Owner", person),
                        wrap("AccessControlList", *grants))


async def _requested_acl(ctx: Ctx) -> str:
    """The canned ACL of a PutBucketAcl/PutObjectAcl: x-amz-acl, or an equivalent document."""
    access.check_acl_headers(ctx.headers)
    if "x-amz-acl" in ctx.headers:
        return access.canned(ctx.headers["x-amz-acl"])
    body = await _body(ctx)
    if not body.strip():
        raise S3Error("MalformedXML",
                      "PutBucketAcl needs x-amz-acl or an AccessControlPolicy document")
    root = parse(body, "AccessControlPolicy")
    owner = ctx.access.get(ctx.bucket).owner
    groups = set()
    for g in root.iter("Grant"):
        grantee = g.find("Grantee")
        permission = (g.findtext("Permission") or "").strip()
        uri = (grantee.findtext("URI") or "").strip() if grantee is not None else ""
        person = (grantee.findtext("ID") or "").strip() if grantee is not None else ""
        if uri and permission == "READ":
            groups.add(uri)
        elif uri or permission != "FULL_CONTROL" or person != owner:
            raise S3Error("NotImplemented", "Only grants a canned ACL makes are implemented "
                          "(the owner's FULL_CONTROL, READ for AllUsers or AuthenticatedUsers)")
    if groups == {access.ALL_USERS}:
        return "public-read"
    if groups == {access.AUTHENTICATED_USERS}:
        return "authenticated-read"
    if groups:
        raise S3Error("NotImplemented", "Only one group grant (READ) is implemented")
    return "private"


async def get_bucket_acl(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    settings = ctx.access.get(ctx.bucket)
    return _acl_document(settings.owner, settings.acl)


async def put_bucket_acl(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    acl = await _requested_acl(ctx)
    access.check_public_acl(ctx.access.get(ctx.bucket), acl)
    await ctx.access.update(ctx.bucket, acl=acl)
    return Response()


async def get_object_acl(ctx: Ctx) -> Response:
    await ctx.store.get_object(ctx.bucket, ctx.key)
    return _acl_document(ctx.access.get(ctx.bucket).owner,
                         ctx.access.object_acl(ctx.bucket, ctx.key))


async def put_object_acl(ctx: Ctx) -> Response:
    await ctx.store.get_object(ctx.bucket, ctx.key)
    acl = await _requested_acl(ctx)
    access.check_public_acl(ctx.access.get(ctx.bucket), acl)
    await ctx.access.set_object_acl(ctx.bucket, ctx.key, acl)
    return Response()


async def get_bucket_policy(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    policy = ctx.access.get(ctx.bucket).policy
    if policy is None:
        raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist",
                      BucketName=ctx.bucket)
    return Response(policy.encode(), media_type="application/json")


async def put_bucket_policy(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    raw = await _body(ctx, access.MAX_POLICY + 1)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "Policies must be valid JSON (UTF-8)") from None
    statements = access.parse_policy(text, ctx.bucket)
    if access.is_public(statements) and ctx.access.get(ctx.bucket).blocks("BlockPublicPolicy"):
        raise S3Error("AccessDenied", "Access Denied: the bucket's public access block "
                      "(BlockPublicPolicy) refuses a public policy")
    await ctx.access.update(ctx.bucket, policy=text)
    return Response(status_code=204)


async def delete_bucket_policy(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    await ctx.access.update(ctx.bucket, policy=None)
    return Response(status_code=204)


async def get_bucket_cors(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    rules = ctx.access.get(ctx.bucket).cors
    if rules is None:
        raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist",
                      BucketName=ctx.bucket)
    return xml_response("CORSConfiguration", *cors.render(rules))


async def put_bucket_cors(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    rules = cors.parse_rules(await _body(ctx, cors.MAX_BODY))
    await ctx.access.update(ctx.bucket, cors=rules)
    return Response()


async def delete_bucket_cors(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    await ctx.access.update(ctx.bucket, cors=None)
    return Response(status_code=204)


async def get_public_access_block(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    block = ctx.access.get(ctx.bucket).block
    if block is None:
        raise S3Error("NoSuchPublicAccessBlockConfiguration", "The public access block "
                      "configuration was not found", BucketName=ctx.bucket)
    return xml_response("PublicAccessBlockConfiguration",
                        *(el(f, block.get(f, False)) for f in BLOCK_FIELDS))


async def put_public_access_block(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    root = parse(await _body(ctx), "PublicAccessBlockConfiguration")
    block = {}
    for child in root:
        value = (child.text or "").strip().lower()
        if child.tag not in BLOCK_FIELDS or value not in ("true", "false"):
            raise S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                          f"validate against our published schema ({child.tag[:40]})")
        block[child.tag] = value == "true"
    if not block:
        raise S3Error("InvalidRequest", "Must specify at least one configuration.")
    await ctx.access.update(ctx.bucket, block={f: block.get(f, False) for f in BLOCK_FIELDS})
    return Response()


async def delete_public_access_block(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    await ctx.access.update(ctx.bucket, block=None)
    return Response(status_code=204)


# Buckets belong to the user who created them (control/bucket_access.py)

async def list_buckets(ctx: Ctx) -> Response:
    """ListBuckets: the caller's own buckets; anonymous callers have none to list."""
    if ctx.principal is None:
        raise access.access_denied()
    return await buckets.list_buckets(ctx)


async def create_bucket(ctx: Ctx) -> Response:
    """CreateBucket: a signed caller's, owned by their user, with x-amz-acl's canned ACL."""
    if ctx.principal is None:
        raise access.access_denied()
    access.check_acl_headers(ctx.headers)
    acl = access.canned(ctx.headers.get("x-amz-acl"))
    if ctx.headers.get("x-amz-object-ownership", "BucketOwnerEnforced") not in (
            "BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"):
        raise S3Error("InvalidArgument", "Invalid x-amz-object-ownership header")
    try:
        response = await buckets.create_bucket(ctx)
    except S3Error as exc:
        if exc.code == "BucketAlreadyOwnedByYou" and \
                ctx.access.get(ctx.bucket).owner != ctx.principal:
            raise S3Error("BucketAlreadyExists", "The requested bucket name is not available. "
                          "The bucket namespace is shared by all users of the system. Please "
                          "select a different name and try again.",
                          BucketName=ctx.bucket) from None
        raise
    await ctx.access.created(ctx.bucket, ctx.principal, acl)
    return response


async def delete_bucket(ctx: Ctx) -> Response:
    response = await buckets.delete_bucket(ctx)
    await ctx.access.forget(ctx.bucket)
    return response


ACCESS_OPERATIONS = {
    ("GET", "", ""): list_buckets, ("PUT", "b", ""): create_bucket,
    ("DELETE", "b", ""): delete_bucket, ("POST", "b", ""): post.post_object,
    ("GET", "b", "acl"): get_bucket_acl, ("PUT", "b", "acl"): put_bucket_acl,
    ("GET", "o", "acl"): get_object_acl, ("PUT", "o", "acl"): put_object_acl,
    ("GET", "b", "policy"): get_bucket_policy, ("PUT", "b", "policy"): put_bucket_policy,
    ("DELETE", "b", "policy"): delete_bucket_policy,
    ("GET", "b", "cors"): get_bucket_cors, ("PUT", "b", "cors"): put_bucket_cors,
    ("DELETE", "b", "cors"): delete_bucket_cors,
    ("GET", "b", "publicAccessBlock"): get_public_access_block,
    ("PUT", "b", "publicAccessBlock"): put_public_access_block,
    ("DELETE", "b", "publicAccessBlock"): delete_public_access_block,
}
ACCESS_SUBRESOURCES = ("acl", "policy", "cors", "publicAccessBlock")
