"""Email through SMTP (plain, STARTTLS or implicit TLS; login when configured)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from _lib import net
from delivery import DeliveryError
from fields import Notice


def message(target: dict[str, Any], n: Notice, text: str, title: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = target["from"]
    msg["To"] = ", ".join(target["to"])
    msg["Subject"] = title
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="dayfly")
    msg["X-Dayfly-Event-Id"] = n.id
    msg.set_content(text)
    return msg


def send(target: dict[str, Any], msg: EmailMessage, password: str | None) -> None:
    """Deliver once; DeliveryError (retryable unless the server answered 5xx)."""
    host, port, timeout = target["host"], target["port"], target["timeout"]
    try:
        if target["security"] == "tls":
            client: smtplib.SMTP = net.SMTP_SSL(host, port, timeout=timeout,
                                                context=ssl.create_default_context())
        else:
            client = net.SMTP(host, port, timeout=timeout)
        with client:
            if target["security"] == "starttls":
                client.starttls(context=ssl.create_default_context())
            if target.get("username"):
                client.login(target["username"], password or "")
            client.send_message(msg)
    except net.EgressRefused as exc:
        raise DeliveryError(f"{target['name']}: {exc}", retryable=False) from None
    except smtplib.SMTPResponseException as exc:
        # smtplib's own refusals carry text (a reply line too long: "Line too long."), the
        # server's replies bytes
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else error
        raise DeliveryError(f"{target['name']}: SMTP {exc.smtp_code} {text}",
                            retryable=exc.smtp_code < 500) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"{target['name']}: recipients refused: {exc.recipients}",
                            retryable=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"{target['name']}: {type(exc).__name__}: {exc}") from None
