"""Bucket CORS: the rules (Put/Get/DeleteBucketCors), preflights answered by them, and the
CORS headers of actual responses.

A rule matches a request when one of its AllowedOrigins matches the Origin (at most one `*`
each, as S3), its AllowedMethods has the method, and (preflights) every requested header
matches one of its AllowedHeaders (case-insensitive, `*` wildcards). The first rule that
matches answers; with none, a preflight is a 403 and an actual response gets no CORS headers
(the browser then hides it from the page).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from starlette.responses import Response

from ...numbers import uint
from ...stores.s3errors import S3Error
from .xml import el, parse, wrap

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_RULES = 100
MAX_BODY = 64 * 1024


def _malformed(why: str) -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not "
                   f"validate against our published schema ({why})")


def parse_rules(body: bytes) -> tuple[dict[str, Any], ...]:
    """The rules of a CORSConfiguration document, validated as S3 does."""
    root = parse(body, "CORSConfiguration")
    rules = []
    for node in root:
        if node.tag != "CORSRule":
            raise _malformed(f"unexpected element {node.tag[:40]}")
        rule: dict[str, Any] = {"origins": [], "methods": [], "headers": [], "expose": []}
        for child in node:
            value = (child.text or "").strip()
            if child.tag == "AllowedOrigin":
                if value.count("*") > 1:
                    raise S3Error("InvalidRequest", f"AllowedOrigin {value[:80]!r} can not have "
                                  "more than one wildcard.")
                rule["origins"].append(value)
            elif child.tag == "AllowedMethod":
                if value not in METHODS:
                    raise S3Error("InvalidRequest", "Found unsupported HTTP method in CORS "
                                  f"config. Unsupported method is {value[:20]}")
                rule["methods"].append(value)
            elif child.tag == "AllowedHeader":
                if value.count("*") > 1:
                    raise S3Error("InvalidRequest", f"AllowedHeader {value[:80]!r} can not have "
                                  "more than one wildcard.")
                rule["headers"].append(value.lower())
            elif child.tag == "ExposeHeader":
                rule["expose"].append(value)
            elif child.tag == "MaxAgeSeconds":
                age = uint(value, 10)
                if age is None:
                    raise _malformed("MaxAgeSeconds must be a non-negative integer (at most "
                                     "10 digits)")
                rule["max_age"] = age
            elif child.tag == "ID":
                rule["id"] = value[:255]
            else:
                raise _malformed(f"unexpected element {child.tag[:40]} in CORSRule")
        if not rule["origins"] or not rule["methods"]:
            raise _malformed("a CORSRule needs an AllowedOrigin and an AllowedMethod")
        rules.append(rule)
    if not rules or len(rules) > MAX_RULES:
        raise _malformed(f"a CORSConfiguration has 1 to {MAX_RULES} CORSRules")
    return tuple(rules)


def render(rules: tuple[dict[str, Any], ...]) -> list[str]:
    """The CORSRule elements of GetBucketCors."""
    return [wrap("CORSRule", el("ID", r.get("id")),
                 *(el("AllowedHeader", h) for h in r["headers"]),
                 *(el("AllowedMethod", m) for m in r["methods"]),
                 *(el("AllowedOrigin", o) for o in r["origins"]),
                 *(el("ExposeHeader", h) for h in r["expose"]),
                 el("MaxAgeSeconds", r.get("max_age"))) for r in rules]


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> re.Pattern:
    return re.compile(re.escape(glob).replace(r"\*", ".*"), re.IGNORECASE)


def _matches(globs: list[str], value: str) -> bool:
    return any(_pattern(g).fullmatch(value) for g in globs)


def find(rules: tuple[dict[str, Any], ...], origin: str, method: str,
         headers: list[str] = ()) -> dict[str, Any] | None:  # type: ignore[assignment]
    """The first rule allowing `origin` to send `method` with `headers`, or None."""
    for rule in rules:
        if (method in rule["methods"] and _matches(rule["origins"], origin)
                and all(_matches(rule["headers"], h) for h in headers)):
            return rule
    return None


def _allow_origin(rule: dict[str, Any], origin: str) -> dict[str, str]:
    if "*" in rule["origins"]:
        return {"access-control-allow-origin": "*"}
    return {"access-control-allow-origin": origin, "access-control-allow-credentials": "true"}


def preflight(rules: tuple[dict[str, Any], ...] | None, headers: Any) -> Response:
    """The answer to OPTIONS: the matching rule's permissions, or 403."""
    origin = headers.get("origin")
    method = headers.get("access-control-request-method")
    if not origin or not method:
        raise S3Error("InvalidRequest", "Insufficient information. Origin request header "
                      "needed." if not origin else "Insufficient information. "
                      "Access-Control-Request-Method header needed.")
    if not rules:
        raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.")
    asked = [h.strip().lower() for h in headers.get("access-control-request-headers",
                                                      "").split(",") if h.strip()]
    rule = find(rules, origin, method, asked)
    if rule is None:
        raise S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed. This "
                      "is usually because the evalution of Origin, request method / "
                      "Access-Control-Request-Method or Access-Control-Request-Headers are not "
                      "whitelisted by the resource's CORS spec.", Method=method[:16],
                      ResourceType="OBJECT")
    out = _allow_origin(rule, origin)
    out["access-control-allow-methods"] = ", ".join(rule["methods"])
    if asked:
        out["access-control-allow-headers"] = ", ".join(asked)
    if rule["expose"]:
        out["access-control-expose-headers"] = ", ".join(rule["expose"])
    if "max_age" in rule:
        out["access-control-max-age"] = str(rule["max_age"])
    out["vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    return Response(headers=out)


def response_headers(rules: tuple[dict[str, Any], ...] | None, origin: str | None,
                     method: str) -> dict[str, str]:
    """CORS headers for an actual response to `method` from `origin` (none if no rule)."""
    if not rules or not origin:
        return {}
    rule = find(rules, origin, method)
    if rule is None:
        return {}
    out = _allow_origin(rule, origin)
    out["access-control-allow-methods"] = ", ".join(rule["methods"])
    if rule["expose"]:
        out["access-control-expose-headers"] = ", ".join(rule["expose"])
    if "max_age" in rule:
        out["access-control-max-age"] = str(rule["max_age"])
    out["vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    return out
