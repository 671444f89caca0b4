"""notify's options, validated at deploy; its egress allow-list and secrets come from them."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ..control.manifest import HOST_RE
from ..errors import InvalidParameter
from .options import Checker, Option, Prepared, limit_options

NAME = "notify"
WHERE = f"builtin:{NAME}"
FORMATS = ("json", "cloudevents", "cloudevents-binary")
SECURITY = ("none", "starttls", "tls")
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
HEADER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
RESERVED_HEADERS = ("host", "content-type", "content-length", "user-agent", "connection",
                    "transfer-encoding")
WEBHOOK_KEYS = ("type", "name", "url", "format", "signing_secret", "headers", "rate_limit",
                "timeout", "retries", "backoff")
EMAIL_KEYS = ("type", "name", "host", "port", "security", "username", "password_secret", "from",
              "to", "rate_limit", "timeout", "retries", "backoff")
SHORTCUTS = {"webhook": "url", "format": "format", "signing_secret": "signing_secret",
             "rate_limit": "rate_limit", "smtp_host": "host", "smtp_port": "port",
             "smtp_security": "security", "smtp_username": "username",
             "smtp_password_secret": "password_secret", "email_from": "from", "email_to": "to"}
DEFAULT_TEMPLATE = "${source} event ${event} on ${subject} at ${time}"
DEFAULT_TITLE = "dayfly: ${event} ${subject}"

OPTIONS = (
    Option("targets", "list of tables", None, "webhook and email targets (docs/builtins.md)"),
    Option("webhook", "URL", None, "shortcut: one webhook target"),
    Option("format", "|".join(FORMATS), "json", "shortcut: the webhook's body format"),
    Option("signing_secret", "secret name", None, "shortcut: HMAC-SHA256 key of the webhook"),
    Option("rate_limit", "sends/s", None, "shortcut: at most this many sends per second"),
    Option("smtp_host", "host", None, "shortcut: one email target through this server"),
    Option("smtp_port", "int", 25, "shortcut: its port"),
    Option("smtp_security", "|".join(SECURITY), "none", "shortcut: TLS on the SMTP connection"),
    Option("smtp_username", "text", None, "shortcut: SMTP login"),
    Option("smtp_password_secret", "secret name", None, "shortcut: SMTP password secret"),
    Option("email_from", "address", None, "shortcut: the sender"),
    Option("email_to", "address list", None, "shortcut: the recipients"),
    Option("template", "template", DEFAULT_TEMPLATE, "message text; ${name} and ${new.col}"),
    Option("title", "template", DEFAULT_TITLE, "email subject / `title` field"),
    Option("events", "list", [], "only events whose name starts so (e.g. ObjectCreated, INSERT)"),
    Option("retries", "int 0-10", 3, "retries of a failed send within one invocation"),
    Option("backoff", "seconds", 0.5, "first retry delay (doubles each time)"),
    *limit_options(128, 60),
)


def _webhook(c: Checker) -> dict[str, Any]:
    url = c.text("url")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise c.fail("url", f"has a bad port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not HOST_RE.match(
            parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"):
        raise c.fail("url", f"must be an http:// or https:// URL, got {url!r}")
    if parts.username or parts.password:
        raise c.fail("url", "must not carry credentials: use signing_secret or headers")
    headers = c.get("headers", {})
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and HEADER_RE.match(k) and isinstance(v, str) and "\n" not in v
            for k, v in headers.items()):
        raise c.fail("headers", "must be a table of Header-Name = \"value\"")
    low = [k.lower() for k in headers]
    if any(k in RESERVED_HEADERS or k.startswith(("ce-", "x-dayfly-")) for k in low):
        raise c.fail("headers", f"may not set {', '.join(RESERVED_HEADERS)}, ce-* or "
                                "x-dayfly-* (dayfly sets them)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {"url": url, "format": c.text("format", "json", FORMATS),
            "signing_secret": c.secret("signing_secret"), "headers": dict(zip(low, headers.values(),
                                                                              strict=True)),
            "endpoint": f"{host}:{port}"}


def _email(c: Checker) -> dict[str, Any]:
    host = c.text("host")
    if not HOST_RE.match(host):
        raise c.fail("host", f"must be a host name or address, got {host!r}")
    security = c.text("security", "none", SECURITY)
    port = c.integer("port", 465 if security == "tls" else 25, 1, 65535)
    sender = c.text("from")
    to = c.get("to")
    to = [to] if isinstance(to, str) else to
    if not isinstance(to, list) or not to or len(to) > 100:
        raise c.fail("to", "must be one address or a list of 1-100")
    for addr in [sender, *to]:
        if not isinstance(addr, str) or not EMAIL_RE.match(addr):
            raise c.fail("to" if addr != sender else "from", f"{addr!r} is not an email address")
    username = c.text("username", None)
    return {"host": host, "port": port, "security": security, "username": username,
            "password_secret": c.secret("password_secret"), "from": sender, "to": to,
            "endpoint": f"{host}:{port}"}


def _target(i: int, raw: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("webhook", "email"):
        raise InvalidParameter(f"{WHERE}: targets[{i}] must be a table with type = \"webhook\" "
                               f"or \"email\", got {raw!r}")
    c = Checker(f"{WHERE}: targets[{i}] ({kind})", raw,
                list(WEBHOOK_KEYS if kind == "webhook" else EMAIL_KEYS))
    t = _webhook(c) if kind == "webhook" else _email(c)
    t.update(type=kind, name=c.text("name", f"{kind}-{i + 1}"),
             rate_limit=c.number("rate_limit", None, 0.01, 10000),
             timeout=c.number("timeout", 10, 1, 300),
             retries=c.integer("retries", defaults["retries"], 0, 10),
             backoff=c.number("backoff", defaults["backoff"], 0, 60))
    return t


def _shortcut_targets(c: Checker) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "webhook" in c.raw:
        keys = ("webhook", "format", "signing_secret", "rate_limit")
        out.append({"type": "webhook", **{SHORTCUTS[k]: c.raw[k] for k in keys if k in c.raw}})
    if "smtp_host" in c.raw or "email_to" in c.raw:
        out.append({"type": "email", **{SHORTCUTS[k]: c.raw[k] for k in SHORTCUTS
                                        if k.startswith(("smtp_", "email_")) and k in c.raw}})
        if "rate_limit" in c.raw:
            out[-1]["rate_limit"] = c.raw["rate_limit"]
    return out


def prepare(raw: Any) -> Prepared:
    """Validate notify's options; config.json, and a manifest granting only its destinations."""
    c = Checker(WHERE, raw, [o.name for o in OPTIONS])
    defaults = {"retries": c.integer("retries", 3, 0, 10),
                "backoff": c.number("backoff", 0.5, 0, 60)}
    shortcuts = [k for k in SHORTCUTS if k in c.raw]
    if "targets" in c.raw:
        if shortcuts:
            raise c.fail(shortcuts[0], "cannot be combined with 'targets'")
        raw_targets = c.raw["targets"]
        if not isinstance(raw_targets, list):
            raise c.fail("targets", "must be a list of target tables")
    else:
        raw_targets = _shortcut_targets(c)
    if not raw_targets or len(raw_targets) > 20:
        raise c.fail("targets", "needs 1-20 destinations (or the webhook / smtp_host shortcut)")
    targets = [_target(i, t, defaults) for i, t in enumerate(raw_targets)]
    names = [t["name"] for t in targets]
    if len(set(names)) != len(names):
        raise c.fail("targets", "names must be unique")
    events = c.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
        raise c.fail("events", "must be a list of event name prefixes")
    cfg = {"targets": targets, "template": c.text("template", DEFAULT_TEMPLATE),
           "title": c.text("title", DEFAULT_TITLE), "events": events}
    network = sorted({t["endpoint"] for t in targets})
    secrets = sorted({s for t in targets for s in (t.get("signing_secret"),
                                                   t.get("password_secret")) if s})
    manifest = {"network": network, "secrets": secrets, "buckets": [], **c.limits(128, 60)}
    if any(t["rate_limit"] for t in targets):
        manifest["max_instances"] = 1  # one instance holds the only rate limiter
    return Prepared(cfg, manifest, None)
