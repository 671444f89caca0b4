"""HTTP webhooks: JSON or CloudEvents 1.0 (structured or binary), signed with HMAC-SHA256.

Signature: `X-Dayfly-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

from _lib import net
from delivery import DeliveryError
from fields import Notice

USER_AGENT = "dayfly-notify/1"
_CE_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def signature(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def payload(n: Notice, message: str, title: str) -> dict[str, Any]:
    """The notification's data: the rendered message and title, and the original record."""
    return {"message": message, "title": title, "source": n.source, "event": n.event,
            "subject": n.subject, "record": n.record}


def request(n: Notice, message: str, title: str, fmt: str) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one notification in the target's format."""
    data = payload(n, message, title)
    ce = {"specversion": "1.0", "id": n.id, "source": n.origin or "/dayfly",
          "type": f"dayfly.{n.source}.{n.event or 'event'}", "subject": n.subject, "time": n.time}
    if fmt == "cloudevents":
        body = {**ce, "datacontenttype": "application/json", "data": data}
        return _json(body), {"content-type": "application/cloudevents+json; charset=utf-8"}
    if fmt == "cloudevents-binary":
        headers = {f"ce-{k}": quote(str(v), safe=_CE_SAFE) for k, v in ce.items()}
        return _json(data), {**headers, "content-type": "application/json"}
    body = {"id": n.id, "time": n.time, **data}
    return _json(body), {"content-type": "application/json"}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


def send(target: dict[str, Any], body: bytes, headers: dict[str, str], event_id: str,
         secret: str | None) -> int:
    """POST once; the status, or DeliveryError (retryable for 408/425/429/5xx and I/O)."""
    url = urlsplit(target["url"])
    h = {**target.get("headers", {}), **headers, "user-agent": USER_AGENT,
         "x-dayfly-event-id": event_id}
    if secret is not None:
        h["x-dayfly-signature"] = signature(secret, body, int(time.time()))
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    conn = net.http_connection(target["url"], timeout=target["timeout"])
    try:
        conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        text = resp.read(2048).decode(errors="replace").strip()
    except net.EgressRefused as exc:
        raise DeliveryError(f"{target['name']}: {exc}", retryable=False) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{target['name']}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()
    if resp.status < 300:
        return resp.status
    retryable = resp.status in (408, 425, 429) or resp.status >= 500
    after = resp.getheader("retry-after")
    raise DeliveryError(f"{target['name']}: HTTP {resp.status} from {url.netloc}"
                        + (f": {text[:200]}" if text else ""), retryable,
                        float(after) if after and after.isascii() and after.isdigit() else None)
