"""The conntrack cut-over against the real kernel: real flows, deleted by destination.

A "router" namespace reaches a "cloud" namespace over a veth; the cloud holds
two IPv4 and two IPv6 hosts on its loopback, each with a TCP listener. The
router tracks connections because an nftables rule in it uses ``ct``
(without one, the kernel tracks nothing), and it opens a UDP flow and a TCP
connection to every host, plus one UDP flow in conntrack zone 5. The cloud
opens one flow *from* a pinned host to the router: its original destination
is the router, so it must survive. The entries are listed by pyroute2 in a
process inside the namespace, independently of the code under test.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pytest_mock import MockerFixture

from remsim_supervisor.adapters import conntrack
from remsim_supervisor.adapters.conntrack import ConntrackError, flush_conntrack
from remsim_supervisor.adapters.routing import RoutingError
from tests.netns import exec_in, ip, netns

D1, D2 = "10.251.9.9", "10.251.9.10"
D1_6, D2_6 = "fd00:251::9", "fd00:251::10"
ROUTER, ROUTER_6 = "10.251.1.2", "fd00:251:1::2"

NFT_RULES = """
table inet remsim_test {
    chain raw_out {
        type filter hook output priority -300;
        udp dport 5002 ct zone set 5
    }
    chain out {
        type filter hook output priority 0;
        ct state new counter
    }
}
"""

LISTENERS = r"""
import socket, sys
servers = []
for host in sys.argv[1:]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.create_server((host, 7000), family=family)
    servers.append(s)
print("ready", flush=True)
held = []
while True:
    for s in servers:
        s.settimeout(0.05)
        try:
            held.append(s.accept())
        except TimeoutError:
            pass
"""

FLOWS = r"""
import socket, sys
held = []
for host in sys.argv[1:]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    u = socket.socket(family, socket.SOCK_DGRAM)
    u.sendto(b"hello", (host, 5000))
    held.append(u)
    held.append(socket.create_connection((host, 7000), timeout=5))
z = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
z.sendto(b"zone five", (sys.argv[1], 5002))
held.append(z)
print("ready", flush=True)
sys.stdin.readline()
"""

INBOUND = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.251.9.9", 0))
s.sendto(b"from a pinned host", ("10.251.1.2", 6000))
"""

# pyroute2's own reading of the table: one JSON line per entry.
LIST_ENTRIES = r"""
import json, socket
from pyroute2 import NFCTSocket
for family, key in ((socket.AF_INET, "CTA_IP_V4"), (socket.AF_INET6, "CTA_IP_V6")):
    sock = NFCTSocket(nfgen_family=family)
    for msg in sock.dump():
        orig = msg.get_attr("CTA_TUPLE_ORIG")
        address, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
        print(json.dumps([address.get_attr(key + "_SRC"), address.get_attr(key + "_DST"),
                          proto.get_attr("CTA_PROTO_NUM"), proto.get_attr("CTA_PROTO_DST_PORT"),
                          msg.get_attr("CTA_ZONE") or 0]))
    sock.close()
"""


@dataclass
class Lab:
    router: str
    cloud: str

    def entries(self) -> list[tuple[str, str, int, int | None, int]]:
        """(source, destination, protocol, destination port, zone) of every entry."""
        out = subprocess.run(exec_in(self.router, sys.executable, "-c", LIST_ENTRIES),
                             check=True, capture_output=True, text=True, timeout=30)
        entries = []
        for line in out.stdout.splitlines():
            src, dst, proto, port, zone = json.loads(line)
            entries.append((src, dst, proto, port, zone))
        return sorted(entries)

    def to(self, destination: str) -> list[tuple[str, str, int, int | None, int]]:
        return [entry for entry in self.entries() if entry[1] == destination]


def _start(argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise AssertionError(f"{argv[-1]} did not start")
    return proc


@pytest.fixture
def lab() -> Iterator[Lab]:
    if shutil.which("nft") is None:
        pytest.fail("the conntrack tests need the nft tool to make the kernel track "
                    "connections: install nftables (apt-get install -y nftables)")
    with netns("rsct") as router, netns("rscc") as cloud:
        for ns in (router, cloud):  # no duplicate address detection: IPv6 is usable at once
            subprocess.run(exec_in(ns, "sh", "-c",
                                   "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"),
                           check=True)
        ip("link", "add", "wwan0", "netns", router, "type", "veth", "peer", "name", "gw0",
           "netns", cloud)
        # Up before the addresses: an IPv6 address added to a down veth answers
        # its first neighbour solicitation only after a second.
        ip("-n", router, "link", "set", "wwan0", "up")
        ip("-n", cloud, "link", "set", "gw0", "up")
        ip("-n", router, "addr", "add", f"{ROUTER}/24", "dev", "wwan0")
        ip("-n", router, "-6", "addr", "add", f"{ROUTER_6}/64", "dev", "wwan0", "nodad")
        ip("-n", cloud, "addr", "add", "10.251.1.1/24", "dev", "gw0")
        ip("-n", cloud, "-6", "addr", "add", "fd00:251:1::1/64", "dev", "gw0", "nodad")
        for host in (D1, D2):
            ip("-n", cloud, "addr", "add", f"{host}/32", "dev", "lo")
        for host in (D1_6, D2_6):
            ip("-n", cloud, "-6", "addr", "add", f"{host}/128", "dev", "lo", "nodad")
        ip("-n", router, "route", "add", "default", "via", "10.251.1.1")
        ip("-n", router, "-6", "route", "add", "default", "via", "fd00:251:1::1")
        subprocess.run(exec_in(router, "nft", "-f", "-"), input=NFT_RULES, text=True,
                       check=True)
        procs = [_start(exec_in(cloud, sys.executable, "-c", LISTENERS, D1, D2, D1_6, D2_6))]
        try:
            procs.append(_start(exec_in(router, sys.executable, "-c", FLOWS, D1, D2, D1_6, D2_6)))
            subprocess.run(exec_in(cloud, sys.executable, "-c", INBOUND), check=True)
            yield Lab(router, cloud)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()


def test_the_flows_are_tracked(lab: Lab) -> None:
    entries = lab.entries()

    def to(host: str) -> list[tuple[str, str, int, int | None, int]]:
        return [e for e in entries if e[1] == host]

    assert to(D1) == sorted([(ROUTER, D1, 6, 7000, 0), (ROUTER, D1, 17, 5000, 0),
                             (ROUTER, D1, 17, 5002, 5)])
    assert len(to(D2)) == len(to(D1_6)) == len(to(D2_6)) == 2
    assert [e for e in entries if e[0] == D1] == [(D1, ROUTER, 17, 6000, 0)]


def test_flush_deletes_the_entries_to_one_destination_and_no_other(lab: Lab) -> None:
    before = lab.entries()

    assert flush_conntrack([D1], netns=lab.router) == 3

    after = lab.entries()
    assert lab.to(D1) == []
    assert after == [e for e in before if e[1] != D1]
    assert (D1, ROUTER, 17, 6000, 0) in after  # from the pinned host: not ours to cut


def test_flush_ipv6_and_several_at_once(lab: Lab) -> None:
    before = lab.entries()

    assert flush_conntrack([D1_6, D2, D1_6], netns=lab.router) == 4

    assert lab.entries() == [e for e in before if e[1] not in (D1_6, D2)]


def test_many_pins_cost_one_dump_per_family(lab: Lab, mocker: MockerFixture) -> None:
    # 500 pinned addresses (two of them with flows): one dump for IPv4 and one
    # for IPv6, not one per address, and exactly their entries go.
    dumps: list[int] = []
    send = conntrack._Ctnetlink._send

    def counting(self: conntrack._Ctnetlink, command: int, flags: int, family: int,
                 payload: bytes) -> int:
        if command == conntrack.IPCTNL_MSG_CT_GET:
            dumps.append(family)
        return send(self, command, flags, family, payload)

    mocker.patch.object(conntrack._Ctnetlink, "_send", autospec=True, side_effect=counting)
    pins = [f"10.252.{i // 250}.{i % 250 + 1}" for i in range(250)]
    pins += [f"fd00:252::{i:x}" for i in range(1, 249)] + [D1, D2_6]
    before = lab.entries()
    assert flush_conntrack(pins, netns=lab.router) == 5
    assert sorted(dumps) == sorted([socket.AF_INET, socket.AF_INET6])
    assert lab.entries() == [e for e in before if e[1] not in (D1, D2_6)]


def test_flushing_twice_or_nothing_deletes_nothing(lab: Lab) -> None:
    assert flush_conntrack([D2_6], netns=lab.router) == 2
    before = lab.entries()
    assert flush_conntrack([D2_6], netns=lab.router) == 0
    assert flush_conntrack(D2_6, netns=lab.router) == 0  # one address given bare
    assert flush_conntrack([], netns=lab.router) == 0
    assert flush_conntrack(["10.251.9.123", "fd00:251::123"], netns=lab.router) == 0
    assert lab.entries() == before


def test_without_the_kernel_filter_the_result_is_the_same(
        lab: Lab, mocker: MockerFixture) -> None:
    # A flag the kernel does not know: it refuses the filter, as a kernel
    # before 5.8 would, and the dump is filtered here instead.
    mocker.patch.object(conntrack, "CTA_FILTER_FLAG_IP_DST", 1 << 30)
    before = lab.entries()
    assert flush_conntrack([D1], netns=lab.router) == 3
    assert lab.entries() == [e for e in before if e[1] != D1]


def test_a_kernel_that_ignores_the_filter_gives_the_same_result(
        lab: Lab, mocker: MockerFixture) -> None:
    # An attribute type the kernel does not know is skipped, as older kernels
    # skip CTA_FILTER: the dump returns everything and the check here decides.
    mocker.patch.object(conntrack, "CTA_FILTER", 0x3FF0)
    before = lab.entries()
    assert flush_conntrack([D2], netns=lab.router) == 2
    assert lab.entries() == [e for e in before if e[1] != D2]


def test_bad_input_and_missing_namespace() -> None:
    with pytest.raises(ConntrackError, match=r"not an IP address: 'bankd.example.com'"):
        flush_conntrack(["bankd.example.com"])
    with pytest.raises(ConntrackError, match="no network namespace 'rsst-no-such-namespace'"):
        flush_conntrack([D1], netns="rsst-no-such-namespace")
    assert issubclass(ConntrackError, RoutingError)  # one except clause serves both


def test_without_root_it_says_run_as_root(lab: Lab) -> None:
    script = (
        "import os, sys\n"
        "from remsim_supervisor.adapters.conntrack import flush_conntrack, ConntrackError\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    flush_conntrack(['10.251.9.9'])\n"
        "except ConntrackError as e:\n"
        "    print(e)\n")
    out = subprocess.run(exec_in(lab.router, sys.executable, "-c", script),
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cannot read conntrack entries: not permitted (run as root)"
    assert len(lab.to(D1)) == 3


def test_a_kernel_that_does_not_answer_is_named_in_one_line(mocker: MockerFixture) -> None:
    """A socket whose peer never answers stands in for a wedged ctnetlink socket:
    the flush ends after its bound with a line that says what timed out."""
    mine, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    mocker.patch.object(conntrack, "_open_socket", return_value=mine)
    mocker.patch.object(conntrack, "_TIMEOUT_S", 0.2)
    try:
        with pytest.raises(ConntrackError) as raised:
            flush_conntrack([D1])
        assert str(raised.value) == ("the kernel did not answer a conntrack request "
                                     "within 0.2 s")
    finally:
        peer.close()
        mine.close()
