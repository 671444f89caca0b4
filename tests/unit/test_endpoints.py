"""What a declared `network` list becomes in a sandbox (sandbox/linux/endpoints.py)."""

from __future__ import annotations

import pytest

from dayfly.errors import InvalidParameter
from dayfly.sandbox.linux.endpoints import HOSTS, hosts_file, plan


def test_addresses_as_written_names_on_their_own_loopback_address():
    eps = plan(["127.0.0.1:5432", "db.internal:5432", "cache.internal:6379",
                "db.internal:6432", "[fd00::5]:5432", "10.0.0.7:6379", "localhost:4222"])
    got = {(e.host, e.port): (e.bind, e.on_loopback) for e in eps}
    assert got == {
        ("127.0.0.1", 5432): ("127.0.0.1", True),
        ("fd00::5", 5432): ("fd00::5", False),
        ("10.0.0.7", 6379): ("10.0.0.7", False),
        ("localhost", 4222): ("127.0.0.1", True),
        ("cache.internal", 6379): ("127.1.0.1", True),  # names in order, one address each
        ("db.internal", 5432): ("127.1.0.2", True),
        ("db.internal", 6432): ("127.1.0.2", True),
    }
    assert {e.upstream for e in eps} == {(e.host, e.port) for e in eps}  # the host connects to
    assert hosts_file(eps) == HOSTS + "127.1.0.1 cache.internal\n127.1.0.2 db.internal\n"


def test_a_declared_address_in_the_names_range_keeps_its_own():
    eps = plan(["127.1.0.1:80", "api.example.com:80"])
    assert {e.host: e.bind for e in eps} == {"127.1.0.1": "127.1.0.1",
                                             "api.example.com": "127.1.0.2"}
    assert hosts_file(eps) == HOSTS + "127.1.0.2 api.example.com\n"


@pytest.mark.parametrize("network,kw,message", [
    (["127.0.0.1:3128"], {"reserved": ("127.0.0.1", 3128)}, "HTTP proxy listens"),
    (["10.0.0.7:5432"], {"loopback_only": "gvisor"}, "declare it by a name"),
    (["[fd00::5]:5432"], {"loopback_only": "gvisor"}, "gvisor tier"),
    (["0.0.0.0:80"], {}, "not a destination"),
    (["224.0.0.1:80"], {}, "not a destination"),
    (["localhost:5432", "127.0.0.1:5432"], {}, "same destination"),
])
def test_what_cannot_be_bound_is_refused(network, kw, message):
    with pytest.raises(InvalidParameter, match=message):
        plan(network, **kw)


def test_gvisor_takes_loopback_addresses_and_names():
    eps = plan(["127.0.0.1:5432", "[::1]:6379", "db.internal:5432"], loopback_only="gvisor")
    assert [e.bind for e in eps] == ["127.0.0.1", "::1", "127.1.0.1"]
