"""Shared by tests/http: functions with an `[http]` table, deployed over boto3 to a real node."""

from __future__ import annotations

import textwrap
import uuid

from conftest import make_zip

ROLE = "arn:aws:iam::000000000000:role/dayfly-http"

# the handler echoes its event (the tests check it against AWS's models with
# aws-lambda-powertools' parser) and answers what the query asks for
ECHO = """
import base64, json

def handler(event, context):
    q = event.get("queryStringParameters") or {}
    if q.get("raise"):
        raise RuntimeError("asked to fail")
    if q.get("bare"):
        return {"bare": True}
    if q.get("text"):
        return "just text"
    if q.get("binary"):
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {"statusCode": int(q.get("status", 200)),
            "headers": {"content-type": "application/json", "x-route": event.get("routeKey", "")},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "cookies": ["c1=v1; Path=/", "c2=v2"],
            "body": json.dumps(event)}
"""


def unique(hint: str) -> str:
    return f"{hint}-{uuid.uuid4().hex[:8]}"


def toml(http: str) -> str:
    return "handler = \"handler.handler\"\n" + textwrap.dedent(http)


def deploy(lam, name: str, http: str, code: str = ECHO, **kw) -> dict:
    """CreateFunction with a dayfly.toml holding `http` (the [http] table's text)."""
    files = {"handler.py": code, "dayfly.toml": toml(http)}
    return lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE,
                               Handler="handler.handler", Code={"ZipFile": make_zip(files)},
                               **kw)
