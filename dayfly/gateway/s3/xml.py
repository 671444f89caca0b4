"""S3's XML: responses built as escaped strings, errors in S3's shape, request bodies parsed
defensively (no DTDs, so no entity expansion; a size limit is applied by the caller)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

from ...stores.s3errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


def el(tag: str, value: Any) -> str:
    """`<tag>value</tag>`, escaped; booleans as true/false; None gives nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def wrap(tag: str, *inner: str) -> str:
    return f"<{tag}>{''.join(inner)}</{tag}>"


def iso(epoch: float) -> str:
    """S3's timestamp in XML: 2026-01-02T03:04:05.678Z."""
    millis = int(epoch * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{millis:03d}Z"


def xml_response(root: str, *inner: str, status: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    body = f'{HEADER}<{root} xmlns="{NS}">{"".join(inner)}</{root}>'
    return Response(body.encode(), status_code=status, headers=headers,
                    media_type="application/xml")


def error_response(exc: S3Error, resource: str, request_id: str) -> Response:
    """`<Error><Code/><Message/>...<Resource/><RequestId/></Error>` with the code's status."""
    extra = "".join(el(k, v) for k, v in exc.extra.items())
    body = (f"{HEADER}<Error>{el('Code', exc.code)}{el('Message', exc.message)}{extra}"
            f"{el('Resource', resource)}{el('RequestId', request_id)}"
            f"{el('HostId', request_id)}</Error>")
    if exc.status == 304:
        return Response(status_code=304, headers=exc.headers)
    return Response(body.encode(), status_code=exc.status, media_type="application/xml",
                    headers=exc.headers)


def _malformed(why: str = "") -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                   "validate against our published schema" + (f" ({why})" if why else ""))


def parse(body: bytes, root: str) -> ET.Element:
    """The root element (namespaces stripped from every tag), or MalformedXML."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise _malformed("DTDs are not allowed")
    try:
        tree = ET.fromstring(body)
    except ET.ParseError:
        raise _malformed() from None
    for node in tree.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.rsplit("}", 1)[1]
    if tree.tag != root:
        raise _malformed(f"expected a {root} element")
    return tree


def text(node: ET.Element, tag: str, default: str | None = None) -> str:
    child = node.find(tag)
    if child is None:
        if default is None:
            raise _malformed(f"{node.tag} needs a {tag}")
        return default
    return child.text or ""
