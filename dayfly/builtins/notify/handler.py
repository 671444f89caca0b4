"""notify: turn each event (bucket change, table change, destination record, direct call) into
notifications for every configured target: webhooks (JSON or CloudEvents) and email."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import mail
import webhook
from delivery import DeliveryError, RateLimiter, attempt
from fields import Notice, notices, render

CONFIG: dict[str, Any] = json.loads((Path(__file__).parent / "config.json").read_text())
LIMITERS = {t["name"]: RateLimiter(t["rate_limit"]) for t in CONFIG["targets"]
            if t.get("rate_limit")}


class NotifyError(Exception):
    """At least one notification was not delivered (the platform's retry may deliver it)."""


def _secret(name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise DeliveryError(f"secret {name} is not in the environment", retryable=False)
    return value


def _deliver(t: dict[str, Any], n: Notice, text: str, title: str, deadline: float) -> None:
    retries, backoff, limiter = t["retries"], t["backoff"], LIMITERS.get(t["name"])
    if t["type"] == "webhook":
        body, headers = webhook.request(n, text, title, t["format"])
        secret = _secret(t.get("signing_secret"))
        attempt(lambda: webhook.send(t, body, headers, n.id, secret), retries, backoff,
                deadline, limiter)
    else:
        msg = mail.message(t, n, text, title)
        password = _secret(t.get("password_secret"))
        attempt(lambda: mail.send(t, msg, password), retries, backoff, deadline, limiter)


def handler(event: Any, context: Any) -> dict[str, Any]:
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 30.0
    deadline = time.monotonic() + max(0.5, remaining - 1.0)
    request_id = getattr(context, "aws_request_id", "") or ""
    items = notices(event, request_id, getattr(context, "function_name", "notify"))
    wanted = CONFIG["events"]
    items = [n for n in items if not wanted or n.event.startswith(tuple(wanted))]
    failures: list[str] = []
    sent = 0
    for n in items:
        text, title = render(CONFIG["template"], n), render(CONFIG["title"], n)
        for t in CONFIG["targets"]:
            try:
                _deliver(t, n, text, title, deadline)
                sent += 1
                print(f"sent {n.source} {n.event} {n.subject} -> {t['name']} (id {n.id})")
            except DeliveryError as exc:
                failures.append(str(exc))
                print(f"FAILED {n.source} {n.event} {n.subject} -> {exc}")
    if failures:
        total = len(items) * len(CONFIG["targets"])
        raise NotifyError(f"{len(failures)} of {total} deliveries failed: "
                          + "; ".join(failures[:5]))
    return {"sent": sent, "ids": [n.id for n in items]}
