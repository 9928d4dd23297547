"""Resolving the pins over IPv6: an IPv6 DNS server, AAAA answers, literal addresses
written as a URL writes them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_supervisor.adapters import resolve
from tests.adapters.test_resolve import FakeDns


class FakeDns6(FakeDns):
    """The same server, on the IPv6 loopback."""

    def __init__(self, records: dict[str, list[str]], ttl: int = 120) -> None:
        self.records = records
        self.ttl = ttl
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()


@pytest.fixture
def dns6() -> Iterator[FakeDns6]:
    server = FakeDns6({"ionmesh.lab.test": ["2001:db8:9::9", "192.0.2.9"],
                       "v6only.lab.test": ["2001:db8:9::10"]})
    yield server
    server.close()


def test_an_ipv6_dns_server_answers_a_and_aaaa(dns6: FakeDns6) -> None:
    addresses, ttl = resolve.query("ionmesh.lab.test", "::1", port=dns6.port)
    assert sorted(addresses) == ["192.0.2.9", "2001:db8:9::9"] and ttl == 120
    # dnsmasq's ADDR#PORT notation, as resolv.conf.auto may carry it
    assert resolve.query("v6only.lab.test", f"::1#{dns6.port}")[0] == ["2001:db8:9::10"]


def test_a_name_with_only_aaaa_records_is_pinned_by_its_ipv6_address(
        dns6: FakeDns6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_system_resolver(name: str, timeout: float) -> list[str]:
        raise OSError("no system resolver here")

    monkeypatch.setattr(resolve, "system_resolve", no_system_resolver)
    r = resolve.Resolver(cache_file=str(tmp_path / "resolved.json"),
                         servers=lambda: [f"::1#{dns6.port}"])
    assert r.resolve("v6only.lab.test") == ["2001:db8:9::10"]
    assert r.known("v6only.lab.test") == ["2001:db8:9::10"]


def test_literal_ipv6_addresses_are_written_as_the_kernel_lists_them() -> None:
    r = resolve.Resolver(servers=lambda: [])
    # As urlsplit leaves the host of http://[2001:DB8:0::1]:5000/, and as a pin may be.
    assert r.known("2001:DB8:0::1") == ["2001:db8::1"]
    assert r.resolve("[2001:db8:0:0::1]") == ["2001:db8::1"]


def test_ipv6_upstream_servers_are_read(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf.auto"
    conf.write_text("# Interface wwan_6\nnameserver 2001:db8::53\nnameserver fe80::1%wwan1\n"
                    "nameserver ::1\n")
    assert resolve.upstream_servers([str(conf)]) == ["2001:db8::53", "fe80::1%wwan1"]
