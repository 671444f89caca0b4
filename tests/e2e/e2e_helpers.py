"""End-to-end helpers: unique function names and create/invoke shortcuts over a real boto3 client.

Not a conftest.py: the top-level tests/conftest.py is imported as `conftest`, and a second
non-package conftest would shadow it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from conftest import make_zip

ROLE = "arn:aws:iam::000000000000:role/dayfly-e2e"


def unique_name(hint: str = "fn") -> str:
    """A function name no other test uses (Lambda names: letters, digits, '-' and '_')."""
    base = re.sub(r"[^A-Za-z0-9_-]", "-", hint)[:40].strip("-") or "fn"
    return f"{base}-{uuid.uuid4().hex[:8]}"


def create(lam, name: str, files: dict[str, str | bytes], **kw: Any) -> dict:
    """CreateFunction with a zip of `files`; Handler defaults to handler.handler."""
    params = {"FunctionName": name, "Runtime": "python3.11", "Role": ROLE,
              "Handler": "handler.handler", "Code": {"ZipFile": make_zip(files)}, **kw}
    return lam.create_function(**params)


def invoke(lam, name: str, event: Any = None, **kw: Any) -> tuple[dict, Any]:
    """Invoke synchronously; return (boto3 response, decoded JSON payload)."""
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({} if event is None else event), **kw)
    return resp, json.loads(resp["Payload"].read())


def wait_for(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; return that, or the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
