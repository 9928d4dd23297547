"""Name resolution for the pinned hosts: system resolver, direct DNS, saved addresses."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_supervisor.adapters import resolve


class FakeDns:
    """A UDP DNS server on loopback answering A/AAAA for a table of names."""

    def __init__(self, records: dict[str, list[str]], ttl: int = 120) -> None:
        self.records = records
        self.ttl = ttl
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
                self._answer(data, peer)
            except OSError:
                return

    def _answer(self, data: bytes, peer: tuple[str, int]) -> None:
        ident, _flags, _qd = struct.unpack_from("!HHH", data)
        offset, labels = 12, []
        while data[offset]:
            labels.append(data[offset + 1:offset + 1 + data[offset]].decode())
            offset += 1 + data[offset]
        qtype = struct.unpack_from("!H", data, offset + 1)[0]
        name = ".".join(labels)
        self.queries.append((name, qtype))
        question = data[12:offset + 5]
        answers = b""
        count = 0
        for address in self.records.get(name, []):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if (qtype == 28) != (family == socket.AF_INET6):
                continue
            rdata = socket.inet_pton(family, address)
            answers += struct.pack("!HHHIH", 0xC00C, qtype, 1, self.ttl, len(rdata)) + rdata
            count += 1
        rcode = 0 if name in self.records else 3
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, count, 0, 0)
        self.sock.sendto(header + question + answers, peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    server = FakeDns({"ionmesh.lab.test": ["10.251.9.9", "fd00:251::9"]})
    yield server
    server.close()


def test_query_and_parse_round_trip(dns: FakeDns) -> None:
    addresses, ttl = resolve.query("ionmesh.lab.test", "127.0.0.1", port=dns.port)
    assert addresses == ["10.251.9.9", "fd00:251::9"]
    assert ttl == 120
    assert dns.queries == [("ionmesh.lab.test", 1), ("ionmesh.lab.test", 28)]


def test_nxdomain_gives_no_address(dns: FakeDns) -> None:
    assert resolve.query("nowhere.lab.test", "127.0.0.1", port=dns.port) == ([], None)


def test_garbage_answers_are_rejected() -> None:
    with pytest.raises(ValueError):
        resolve.parse_answer(b"\x00\x01", 1)
    with pytest.raises(ValueError):
        resolve.parse_answer(struct.pack("!HHHHHH", 7, 0x8180, 0, 0, 0, 0), 8)  # wrong id


def test_upstream_servers_skip_loopback(tmp_path: Path) -> None:
    auto = tmp_path / "resolv.conf.auto"
    auto.write_text("# Interface wan\nnameserver 127.0.0.1\nnameserver 10.251.9.53\n"
                    "nameserver fd00:251::53\n")
    assert resolve.upstream_servers([str(tmp_path / "missing"), str(auto)]) == [
        "10.251.9.53", "fd00:251::53"]


def test_direct_query_when_the_system_resolver_fails_then_the_saved_addresses(
        dns: FakeDns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str, timeout: float) -> list[str]:
        raise TimeoutError("no route to the resolver")

    monkeypatch.setattr(resolve, "system_resolve", broken)
    now = [1000.0]
    cache = tmp_path / "resolved.json"
    server = f"127.0.0.1#{dns.port}"
    r = resolve.Resolver(cache_file=str(cache), servers=lambda: [server],
                         clock=lambda: now[0], timeout=0.5)
    assert r.resolve("ionmesh.lab.test") == ["10.251.9.9", "fd00:251::9"]
    assert r.entries["ionmesh.lab.test"].source == f"DNS server {server}"
    assert not r.due("ionmesh.lab.test")
    now[0] += 121  # the TTL ran out
    assert r.due("ionmesh.lab.test")

    # Every way fails now: the known addresses stay, and survive a restart.
    dns.close()
    assert r.resolve("ionmesh.lab.test") == ["10.251.9.9", "fd00:251::9"]
    again = resolve.Resolver(cache_file=str(cache), servers=lambda: [], clock=lambda: now[0])
    assert again.known("ionmesh.lab.test") == ["10.251.9.9", "fd00:251::9"]
    assert again.due("ionmesh.lab.test")  # but looked up afresh at the first chance


def test_addresses_need_no_lookup() -> None:
    r = resolve.Resolver(servers=lambda: [])
    assert r.resolve("203.0.113.20") == ["203.0.113.20"]
    assert r.known("[fd00::1]") == ["fd00::1"]


def test_the_system_resolver_is_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolve, "system_resolve", lambda name, timeout: ["192.0.2.7"])
    r = resolve.Resolver(servers=lambda: pytest.fail("no direct query needed"))  # type: ignore[arg-type]
    assert r.resolve("example.lab.test") == ["192.0.2.7"]
    assert r.entries["example.lab.test"].source == "system resolver"
