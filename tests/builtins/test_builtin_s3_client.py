"""The builtins' standard-library S3 client against a real endpoint: objects, listings, ranges,
multipart streams, errors, and its CONNECT tunnel through an egress proxy."""

from __future__ import annotations

import configparser
import contextlib
import os
import socket
import threading

import pytest
from builtin_helpers import keys, s3_client

from dayfly.builtins._lib import net, s3, streams


@pytest.fixture(scope="module")
def client(server):
    cp = configparser.ConfigParser()
    cp.read(server.data_dir / "credentials")
    c = s3.Client(server.url, cp["default"]["aws_access_key_id"],
                  cp["default"]["aws_secret_access_key"])
    s3_client(server).create_bucket(Bucket="lib")
    yield c
    c.close()


def test_put_get_head_delete_with_awkward_keys(client):
    for key in ("plain.txt", "dir/ä b+c%20d.txt", "x?y=z&w"):
        etag = client.put("lib", key, b"payload " + key.encode(), "text/plain", {"who": "me"})
        head = client.head("lib", key)
        assert head == {"size": 8 + len(key.encode()), "etag": etag,
                        "content_type": "text/plain", "metadata": {"who": "me"}}
        assert client.get_bytes("lib", key) == b"payload " + key.encode()
        with client.get("lib", key, 2, 5) as body:
            assert body.read() == b"yloa"
        client.delete("lib", key)
        assert client.head("lib", key) is None


def test_errors_carry_s3_codes(client):
    with pytest.raises(s3.S3Error) as info:
        client.get_bytes("lib", "missing")
    assert info.value.code == "NoSuchKey" and info.value.status == 404
    with pytest.raises(s3.S3Error) as info:
        client.put("no-such-bucket", "k", b"")
    assert info.value.code == "NoSuchBucket"


def test_list_pages_through_a_prefix(client, server):
    boto = s3_client(server)
    for i in range(1003):
        boto.put_object(Bucket="lib", Key=f"many/{i:05d}", Body=b"")
    boto.put_object(Bucket="lib", Key="manyother", Body=b"")
    listed = [o["key"] for o in client.list("lib", "many/")]
    assert listed == [f"many/{i:05d}" for i in range(1003)]


def test_object_writer_single_put_multipart_and_abort(client, server):
    with streams.ObjectWriter(client, "lib", "small") as w:
        w.write(b"tiny")
    assert client.get_bytes("lib", "small") == b"tiny"
    blob = os.urandom(12 * 1024 * 1024 + 5)
    with streams.ObjectWriter(client, "lib", "large", part_size=5 * 1024 * 1024) as w:
        for i in range(0, len(blob), 700_000):
            w.write(blob[i:i + 700_000])
    assert w.etag.endswith("-3") and client.get_bytes("lib", "large") == blob
    with pytest.raises(RuntimeError), streams.ObjectWriter(client, "lib", "aborted",
                                                           part_size=5 * 1024 * 1024) as w:
        w.write(blob)
        raise RuntimeError("the producer failed")
    assert client.head("lib", "aborted") is None
    uploads = s3_client(server).list_multipart_uploads(Bucket="lib").get("Uploads", [])
    assert uploads == []


def test_range_reader_seeks(client):
    data = bytes(range(256)) * 4096
    client.put("lib", "ranged", data)
    r = streams.RangeReader(client, "lib", "ranged", len(data), block=1000)
    r.seek(-10, 2)
    assert r.read(100) == data[-10:]
    r.seek(5000)
    assert r.read(3000) == data[5000:8000] and r.tell() == 8000


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that allows one port, like the egress relay."""

    def __init__(self, allowed_port: int) -> None:
        self.allowed = allowed_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tunnels = 0
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        target = head.split(b" ")[1].decode()
        port = int(target.rpartition(":")[2])
        if port != self.allowed:
            msg = f"dayfly: egress to {target} is not declared by function 'f'".encode()
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(msg), msg))
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", port))
        self.tunnels += 1
        self.conns.append(conn)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)

    def drop_tunnels(self) -> None:
        """Close every tunnel, as a server closes keep-alive connections that idled too long."""
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.conns = []

    def close(self) -> None:
        self.sock.close()


def test_requests_tunnel_through_the_proxy_and_refusals_read_clearly(client, server,
                                                                     monkeypatch):
    proxy = ConnectProxy(server.port)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        tunnelled = s3.Client(server.url, client.key_id, client.secret)
        tunnelled.put("lib", "via-proxy", b"hello")
        assert tunnelled.get_bytes("lib", "via-proxy") == b"hello"
        assert proxy.tunnels == 1  # one kept-alive tunnel served both requests
        tunnelled.close()
        with pytest.raises(net.EgressRefused, match=r"egress to 127\.0\.0\.1:9 is not declared"):
            net.connect("127.0.0.1", 9)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert net.proxy_for("127.0.0.1") is None
    finally:
        proxy.close()
    assert "via-proxy" in keys(s3_client(server), "lib", "via")


def test_a_retry_after_a_dropped_keep_alive_connection_takes_a_new_one(client, server,
                                                                      monkeypatch):
    """Every pooled connection idled as long as the one that failed: the retry must not take
    another of them (the server closes idle keep-alive connections after a few seconds)."""
    proxy = ConnectProxy(server.port)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        tunnelled = s3.Client(server.url, client.key_id, client.secret)
        tunnelled.put("lib", "pooled", b"hello")
        first, second = tunnelled.get("lib", "pooled"), tunnelled.get("lib", "pooled")
        assert first.read() == second.read() == b"hello"  # two connections, back in the pool
        assert proxy.tunnels == 2
        proxy.drop_tunnels()
        assert tunnelled.head("lib", "pooled")["size"] == 5
        assert proxy.tunnels == 3
        tunnelled.close()
    finally:
        proxy.close()
