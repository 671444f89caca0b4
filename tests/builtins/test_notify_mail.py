"""notify's SMTP delivery against a real socket: a server whose reply smtplib refuses by itself
(its error text is a str, not the server's bytes) still fails as a DeliveryError."""

from __future__ import annotations

import socket
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

import pytest

from dayfly.builtins import catalog

ROOT = Path(catalog.__file__).parent
for sub in ("", "notify"):  # as the notify bundle's /var/task sees it
    sys.path.insert(0, str(ROOT / sub))

import mail  # noqa: E402
from delivery import DeliveryError  # noqa: E402


def test_an_overlong_reply_line_is_a_delivery_error(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def greet() -> None:  # a greeting longer than smtplib's 8192-byte line limit
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 " + b"x" * 9000 + b"\r\n")
            conn.recv(1024)

    server = threading.Thread(target=greet, daemon=True)
    server.start()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "hi"
    msg.set_content("hello")
    target = {"name": "ops-mail", "host": "127.0.0.1", "port": port, "timeout": 5,
              "security": "none"}
    try:
        with pytest.raises(DeliveryError) as err:
            mail.send(target, msg, None)
    finally:
        listener.close()
        server.join(5)
    assert str(err.value) == "ops-mail: SMTP 500 Line too long."
    assert err.value.retryable is False
