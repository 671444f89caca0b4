"""Put/GetBucketNotificationConfiguration (`?notification`): functions only.

boto3 sends LambdaFunctionConfigurations as flattened `<CloudFunctionConfiguration>` elements
(`Id`, `CloudFunction` = the ARN, one `Event` per type, `Filter/S3Key/FilterRule`). Topic,
queue and EventBridge destinations do not exist here and are refused by name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.responses import Response

from ...control.model import function_arn
from ...control.notifications import EVENTS, LOCAL, Rule, make_rule
from ...errors import DayflyError
from ...stores.s3errors import S3Error
from .context import Ctx
from .payload import Payload
from .xml import el, parse, text, wrap, xml_response

MAX_XML = 1024 * 1024
FUNCTION_TAGS = ("CloudFunctionConfiguration", "LambdaFunctionConfiguration")
UNSUPPORTED = ("TopicConfiguration", "QueueConfiguration", "EventBridgeConfiguration")


def _malformed(why: str) -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                   f"validate against our published schema ({why})")


def _filters(node: ET.Element) -> dict[str, str]:
    out: dict[str, str] = {}
    flt = node.find("Filter")
    if flt is None:
        return out
    key = flt.find("S3Key")
    for rule in key.findall("FilterRule") if key is not None else []:
        name = text(rule, "Name").strip().lower()
        if name not in ("prefix", "suffix"):
            raise S3Error("InvalidArgument", "filter rule name must be either prefix or suffix",
                          ArgumentName="FilterRule.Name", ArgumentValue=name[:64])
        if name in out:
            raise S3Error("InvalidArgument", f"Cannot specify more than one {name} rule in a "
                          "filter.", ArgumentName="FilterRule.Name", ArgumentValue=name)
        out[name] = text(rule, "Value", "")
    return out


def _rule(node: ET.Element) -> Rule:
    arn = text(node, "CloudFunction", "")
    if not arn.strip():
        raise _malformed(f"{node.tag} needs a CloudFunction (the function's ARN)")
    events = [e.text or "" for e in node.findall("Event")]
    if not events:
        raise _malformed(f"{node.tag} needs at least one Event")
    for e in events:
        if e not in EVENTS:
            raise S3Error("InvalidArgument", f"The event is not supported for notifications: "
                          f"{e[:80]} (supported: {', '.join(EVENTS)})", ArgumentName="Event",
                          ArgumentValue=e[:80])
    f = _filters(node)
    try:
        return make_rule(arn.strip(), events, f.get("prefix", ""), f.get("suffix", ""),
                         text(node, "Id", "") or None)
    except DayflyError as exc:
        raise S3Error("InvalidArgument", exc.message, ArgumentName="CloudFunction",
                      ArgumentValue=arn[:256]) from None


async def put_notification(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    body = await Payload(ctx.request, ctx.auth, limit=MAX_XML).read(MAX_XML)
    root = parse(body, "NotificationConfiguration")
    rules = []
    for node in root:
        if node.tag in UNSUPPORTED:
            raise S3Error("InvalidArgument", f"{node.tag} is not supported: dayfly delivers "
                          "bucket notifications to functions only (CloudFunctionConfiguration)",
                          ArgumentName=node.tag)
        if node.tag not in FUNCTION_TAGS:
            raise _malformed(f"unexpected element {node.tag[:64]}")
        rules.append(_rule(node))
    triggers = ctx.triggers
    skip = ctx.headers.get("x-amz-skip-destination-validation", "").lower() == "true"
    bad = [] if skip else triggers.unknown_functions(rules)
    if bad:
        extra = {}
        for i, arn in enumerate(bad[:10], 1):
            extra[f"ArgumentName{i}"] = arn
            extra[f"ArgumentValue{i}"] = "The destination function does not exist"
        raise S3Error("InvalidArgument", "Unable to validate the following destination "
                      "configurations", **extra)
    try:
        await triggers.notifications.put(LOCAL, ctx.bucket, rules)
    except DayflyError as exc:
        raise S3Error("InvalidArgument", exc.message) from None
    return Response()


def _element(rule: Rule, region: str) -> str:
    filters = [wrap("FilterRule", el("Name", name), el("Value", value))
               for name, value in (("Prefix", rule.prefix), ("Suffix", rule.suffix)) if value]
    return wrap("CloudFunctionConfiguration", el("Id", rule.id),
                el("CloudFunction", function_arn(region, rule.function, rule.qualifier)),
                *(el("Event", e) for e in rule.events),
                wrap("Filter", wrap("S3Key", *filters)) if filters else "")


async def get_notification(ctx: Ctx) -> Response:
    await ctx.store.head_bucket(ctx.bucket)
    rules = ctx.triggers.notifications.rules(LOCAL, ctx.bucket)
    return xml_response("NotificationConfiguration",
                        *(_element(r, ctx.store.region) for r in rules))
