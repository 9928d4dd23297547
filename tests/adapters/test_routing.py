"""The policy-routing reconciler against the real kernel, in network namespaces.

The lab: a "router" namespace with three modem-like devices, each a veth
whose peer sits in a "cloud" namespace holding the gateways and the pinned
hosts (10.251.9.9 and friends on its loopback, reachable through every
gateway). ``wwan0`` has the main default route (the primary modem, as netifd
would install it), ``wwan1`` only a subnet route via its gateway, ``wwan2`` is
point-to-point. mwan3-like and netifd-like rules and a few decoys at our
preference or our table are made by the test and must survive everything.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from remsim_supervisor.adapters.routing import (
    RT_PROTO,
    Changes,
    LinkInfo,
    PathSpec,
    Router,
    RoutingError,
    check_priority,
    check_table,
)
from tests.netns import exec_in, ip, netns

PIN = "10.251.9.9"
OTHER = "10.251.9.10"
PIN6 = "fd00:251::9"
OTHER6 = "fd00:251::10"
PRIMARY = PathSpec("primary", "wwan0", "10.251.1.1", ipv6=True, gateway6="fd00:251:1::1")
IOT = PathSpec("iot", "wwan1", "10.251.2.1", ipv6=True, gateway6="fd00:251:2::1")
IOT4 = PathSpec("iot", "wwan1", "10.251.2.1")
P2P = PathSpec("p2p", "wwan2", None)

# What the test puts there for mwan3 and netifd, plus rules and routes that
# share our preference or our table but not both: none of it is ours.
FOREIGN_SETUP = [
    ("rule", "add", "pref", "1001", "iif", "wwan0", "lookup", "1"),
    ("rule", "add", "pref", "2001", "fwmark", "0x100/0x3f00", "lookup", "1"),
    ("rule", "add", "pref", "10000", "from", "10.251.2.2", "lookup", "100"),
    ("rule", "add", "pref", "20000", "iif", "wwan1", "lookup", "100"),
    ("-6", "rule", "add", "pref", "1001", "iif", "wwan0", "lookup", "1"),
    ("-6", "rule", "add", "pref", "10000", "from", "fd00:251:2::2", "lookup", "100"),
    ("rule", "add", "pref", "90", "to", "10.251.9.77", "lookup", "241"),
    ("rule", "add", "pref", "91", "to", "10.251.9.78", "lookup", "240"),
    ("route", "add", "default", "via", "10.251.1.1", "dev", "wwan0", "table", "1"),
    ("route", "add", "default", "via", "10.251.2.1", "dev", "wwan1", "table", "100"),
    ("route", "add", "default", "via", "10.251.2.1", "dev", "wwan1", "table", "241"),
]


@dataclass
class Lab:
    router: str
    cloud: str
    # Off for a test that itself changes what is not ours (a device going down
    # makes the kernel drop every route through it).
    check_foreign: bool = True

    def ip(self, *args: str) -> str:
        return ip("-n", self.router, *args).stdout

    def route_get(self, address: str) -> str:
        family = "-6" if ":" in address else "-4"
        return self.ip(family, "route", "get", address).splitlines()[0]

    def state(self) -> str:
        """Every rule and route of the router, as ip prints them."""
        return "\n".join(self.ip(*args) for args in (
            ("-4", "rule"), ("-6", "rule"),
            ("-4", "route", "show", "table", "all"), ("-6", "route", "show", "table", "all")))

    def foreign(self) -> list[str]:
        """The state minus what is ours (pref 90 with table 240, and table 240)."""
        return [line for line in self.state().splitlines()
                if not (line.startswith("90:") and "lookup 240" in line)
                and "table 240" not in line]

    def ours(self) -> tuple[list[str], list[str], list[str], list[str]]:
        rules = [line for line in self.state().splitlines()
                 if line.startswith("90:") and "lookup 240" in line]
        return (
            [r for r in rules if ":" not in r.split(" ", 1)[1].split(" lookup")[0]],
            [r for r in rules if ":" in r.split(" ", 1)[1].split(" lookup")[0]],
            [line for line in self.ip("-4", "route", "show", "table", "all").splitlines()
             if "table 240 " in line],
            # "show table 240" fails for IPv6 while the kernel has no such table.
            [line for line in self.ip("-6", "route", "show", "table", "all").splitlines()
             if "table 240 " in line],
        )


def build(router: str, cloud: str) -> None:
    def r(*args: str) -> None:
        ip("-n", router, *args)

    def c(*args: str) -> None:
        ip("-n", cloud, *args)

    # No duplicate address detection: link-local addresses (and their local
    # routes) appear at once, so the state is settled when the test starts.
    for ns in (router, cloud):
        subprocess.run(exec_in(ns, "sh", "-c",
                               "echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"),
                       check=True)
    for n, (dev, peer) in enumerate((("wwan0", "gw0"), ("wwan1", "gw1"), ("wwan2", "gw2")), 1):
        ip("link", "add", dev, "netns", router, "type", "veth", "peer", "name", peer,
           "netns", cloud)
        # Up before the addresses: an IPv6 address added to a down veth answers
        # its first neighbour solicitation only after a second.
        r("link", "set", dev, "up")
        c("link", "set", peer, "up")
        if dev == "wwan2":  # point to point: a peer address, no subnet, no gateway
            r("addr", "add", "10.251.3.2", "peer", "10.251.3.1/32", "dev", dev)
            c("addr", "add", "10.251.3.1", "peer", "10.251.3.2/32", "dev", peer)
        else:
            r("addr", "add", f"10.251.{n}.2/24", "dev", dev)
            c("addr", "add", f"10.251.{n}.1/24", "dev", peer)
            r("-6", "addr", "add", f"fd00:251:{n}::2/64", "dev", dev, "nodad")
            c("-6", "addr", "add", f"fd00:251:{n}::1/64", "dev", peer, "nodad")
    for address in (PIN, OTHER, "10.251.9.77", "10.251.9.78"):
        c("addr", "add", f"{address}/32", "dev", "lo")
    for address in (PIN6, OTHER6):
        c("-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad")
    r("route", "add", "default", "via", "10.251.1.1", "dev", "wwan0")
    r("-6", "route", "add", "default", "via", "fd00:251:1::1", "dev", "wwan0")
    r("route", "add", "10.251.8.0/24", "via", "10.251.2.1", "dev", "wwan1")
    r("route", "add", "10.251.7.0/24", "dev", "wwan2")
    for args in FOREIGN_SETUP:
        r(*args)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with netns("rsrt") as router, netns("rscl") as cloud:
        build(router, cloud)
        the_lab = Lab(router, cloud)
        foreign = the_lab.foreign()
        assert len(foreign) > len(FOREIGN_SETUP)
        yield the_lab
        # Whatever the test did, nothing that is not ours has changed.
        if the_lab.check_foreign:
            assert the_lab.foreign() == foreign


@pytest.fixture
def router(lab: Lab) -> Iterator[Router]:
    with Router(240, 90, netns=lab.router) as r:
        yield r


# iproute2 asks with NLM_F_EXCL, so the kernel refuses an exact duplicate
# ("File exists"); a tool that does not (or an older one) gets it. This adds a
# rule the way such a tool does, with a plain RTM_NEWRULE.
ADD_RULE_WITHOUT_EXCL = r"""
import ipaddress, socket, struct, sys
dst, pref, table = ipaddress.ip_address(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
attrs = b""
for kind, value in ((1, dst.packed), (6, struct.pack("=I", pref)), (15, struct.pack("=I", table)),
                    (21, struct.pack("=Bxxx", int(sys.argv[4])))):  # FRA_PROTOCOL
    attrs += struct.pack("=HH", 4 + len(value), kind) + value
body = struct.pack("=BBBBBBBBI", family, dst.max_prefixlen, 0, 0, table, 0, 0, 1, 0) + attrs
sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
sock.send(struct.pack("=LHHLL", 16 + len(body), 32, 0x1 | 0x4 | 0x400, 1, 0) + body)
code = struct.unpack_from("=i", sock.recv(4096), 16)[0]
sys.exit(-code)
"""


def add_rule_without_excl(lab: Lab, dst: str, protocol: int = 0) -> None:
    subprocess.run(exec_in(lab.router, sys.executable, "-c", ADD_RULE_WITHOUT_EXCL, dst,
                           "90", "240", str(protocol)), check=True)


def source_seen_by(lab: Lab, destination: str) -> str:
    """Open a TCP connection from the router; the cloud says which source address came."""
    server = subprocess.Popen(
        exec_in(lab.cloud, sys.executable, "-c",
                "import socket, sys\n"
                f"s = socket.create_server(({destination!r}, 7000), family=socket.AF_INET6 "
                f"if ':' in {destination!r} else socket.AF_INET)\n"
                "print('ready', flush=True)\n"
                "c, peer = s.accept()\n"
                "print(peer[0], flush=True)\n"),
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        subprocess.run(exec_in(lab.router, sys.executable, "-c",
                               f"import socket; socket.create_connection(({destination!r}, 7000), "
                               "timeout=5).close()"), check=True, timeout=10)
        return server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait()


# --- the heartbeat path ---------------------------------------------------------------------

def test_a_pin_leaves_through_the_path_and_everything_else_through_main(
        lab: Lab, router: Router) -> None:
    changes = router.reconcile([PIN], IOT4)

    assert changes.added == ("rule to 10.251.9.9 lookup 240 pref 90",
                             "route default via 10.251.2.1 dev wwan1 table 240")
    assert changes.removed == ()
    assert "via 10.251.2.1 dev wwan1 table 240 src 10.251.2.2" in lab.route_get(PIN)
    assert "via 10.251.1.1 dev wwan0 src 10.251.1.2" in lab.route_get(OTHER)
    assert "table 240" not in lab.route_get(OTHER)
    assert lab.ours()[0] == [f"90:\tfrom all to {PIN} lookup 240 proto {RT_PROTO}"]
    assert lab.ours()[2] == [f"default via 10.251.2.1 dev wwan1 table 240 proto {RT_PROTO} "]
    # Real packets, not only the lookup: the pinned host sees the iot address.
    assert source_seen_by(lab, PIN) == "10.251.2.2"
    assert source_seen_by(lab, OTHER) == "10.251.1.2"


def test_moving_the_path_changes_the_route_and_not_the_rules(lab: Lab, router: Router) -> None:
    router.reconcile([PIN, PIN6], IOT)
    rules_before = lab.ip("-4", "rule") + lab.ip("-6", "rule")

    changes = router.reconcile([PIN, PIN6], PRIMARY)

    assert sorted(changes.added) == [
        "route -6 default via fd00:251:1::1 dev wwan0 table 240",
        "route default via 10.251.1.1 dev wwan0 table 240"]
    assert sorted(changes.removed) == [
        "route -6 default via fd00:251:2::1 dev wwan1 table 240",
        "route default via 10.251.2.1 dev wwan1 table 240"]
    assert lab.ip("-4", "rule") + lab.ip("-6", "rule") == rules_before
    assert "via 10.251.1.1 dev wwan0 table 240" in lab.route_get(PIN)
    assert "via fd00:251:1::1 dev wwan0 table 240" in lab.route_get(PIN6)
    assert source_seen_by(lab, PIN) == "10.251.1.2"

    router.reconcile([PIN, PIN6], IOT)
    assert "via 10.251.2.1 dev wwan1 table 240" in lab.route_get(PIN)
    assert source_seen_by(lab, PIN6) == "fd00:251:2::2"


def test_a_second_reconcile_changes_nothing(lab: Lab, router: Router) -> None:
    first = router.reconcile([PIN, PIN6, "10.251.9.77"], IOT)
    assert first
    state = lab.state()

    second = router.reconcile([PIN, PIN6, "10.251.9.77"], IOT)

    assert not second
    assert second == Changes((), ())
    assert lab.state() == state
    # Another instance (a restart) sees the same and changes nothing either.
    with Router(netns=lab.router) as fresh:
        assert not fresh.reconcile(["10.251.9.77", PIN6, PIN], IOT)
    assert lab.state() == state


def test_no_path_empties_the_table_and_pins_fall_through_to_main(
        lab: Lab, router: Router) -> None:
    router.reconcile([PIN, PIN6], IOT)

    changes = router.reconcile([PIN, PIN6], None)

    assert sorted(changes.removed) == [
        "route -6 default via fd00:251:2::1 dev wwan1 table 240",
        "route default via 10.251.2.1 dev wwan1 table 240"]
    assert changes.added == ()
    rules4, rules6, routes4, routes6 = lab.ours()
    assert len(rules4) == len(rules6) == 1 and routes4 == routes6 == []
    assert "via 10.251.1.1 dev wwan0 src" in lab.route_get(PIN)
    assert "table 240" not in lab.route_get(PIN)
    assert "via fd00:251:1::1 dev wwan0" in lab.route_get(PIN6)
    assert source_seen_by(lab, PIN) == "10.251.1.2"


def test_pins_follow_address_changes(lab: Lab, router: Router) -> None:
    router.reconcile([PIN, OTHER], IOT4)

    changes = router.reconcile([OTHER, "10.251.9.77"], IOT4)

    assert changes.added == ("rule to 10.251.9.77 lookup 240 pref 90",)
    assert changes.removed == ("rule to 10.251.9.9 lookup 240 pref 90",)
    assert "table 240" not in lab.route_get(PIN)
    assert "wwan1 table 240" in lab.route_get(OTHER)


def test_ipv6_pins_use_the_ipv6_route_of_the_path(lab: Lab, router: Router) -> None:
    changes = router.reconcile([PIN6], IOT)

    assert "rule to fd00:251::9 lookup 240 pref 90" in changes.added
    assert "route -6 default via fd00:251:2::1 dev wwan1 table 240" in changes.added
    assert "via fd00:251:2::1 dev wwan1 table 240" in lab.route_get(PIN6)
    assert "via fd00:251:1::1 dev wwan0" in lab.route_get(OTHER6)
    assert "table 240" not in lab.route_get(OTHER6)
    assert lab.ours()[1] == [f"90:\tfrom all to {PIN6} lookup 240 proto {RT_PROTO}"]
    # A path without IPv6 leaves IPv6 pins to the main table.
    router.reconcile([PIN6], IOT4)
    assert lab.ours()[3] == []
    assert "via fd00:251:1::1 dev wwan0" in lab.route_get(PIN6)


def test_a_point_to_point_path_routes_by_device_alone(lab: Lab, router: Router) -> None:
    changes = router.reconcile([PIN], P2P)

    assert "route default dev wwan2 table 240" in changes.added
    assert lab.ours()[2] == [f"default dev wwan2 table 240 proto {RT_PROTO} scope link "]
    assert "dev wwan2 table 240 src 10.251.3.2" in lab.route_get(PIN)
    assert source_seen_by(lab, PIN) == "10.251.3.2"
    assert not router.reconcile([PIN], P2P)
    assert not router.reconcile(PIN, P2P)  # one address given bare


def test_a_table_above_255_works(lab: Lab) -> None:
    with Router(1000, 95, netns=lab.router) as big:
        big.reconcile([OTHER], IOT)
        assert "via 10.251.2.1 dev wwan1 table 1000" in lab.route_get(OTHER)
        assert not big.reconcile([OTHER], IOT)
        assert big.owned() == (["rule to 10.251.9.10 lookup 1000 pref 95"], [
            "route default via 10.251.2.1 dev wwan1 table 1000",
            "route -6 default via fd00:251:2::1 dev wwan1 table 1000"])
        assert len(big.clear().removed) == 3
        assert big.owned() == ([], [])


# --- crash repair and clear -----------------------------------------------------------------

def test_leftovers_of_a_crash_are_repaired(lab: Lab, router: Router) -> None:
    # What a crash, an older version or a hand at the shell may have left:
    for _ in range(2):
        add_rule_without_excl(lab, PIN)
        add_rule_without_excl(lab, PIN6)
    lab.ip("rule", "add", "to", "10.251.9.99", "lookup", "240", "pref", "90")  # a stale pin
    lab.ip("rule", "add", "to", PIN, "iif", "wwan1", "lookup", "240", "pref", "90")
    lab.ip("rule", "add", "to", "10.251.9.0/24", "lookup", "240", "pref", "90")
    for selector in (("not", "from", "10.251.2.3"), ("from", "10.251.2.2"),
                     ("fwmark", "0x100/0x3f00"), ("to", PIN, "ipproto", "tcp", "dport", "443"),
                     ("uidrange", "100-200")):
        lab.ip("rule", "add", *selector, "lookup", "240", "pref", "90")
    lab.ip("-6", "rule", "add", "iif", "wwan1", "lookup", "240", "pref", "90")
    lab.ip("route", "add", "default", "via", "10.251.1.1", "dev", "wwan0", "table", "240",
           "metric", "5")
    lab.ip("route", "add", "10.251.50.0/24", "dev", "wwan1", "table", "240")
    lab.ip("route", "add", "unreachable", "10.251.60.0/24", "table", "240")
    lab.ip("-6", "route", "add", "default", "dev", "wwan0", "table", "240")
    lab.ip("-6", "route", "add", "blackhole", "fd00:251:60::/64", "table", "240")
    before = router.owned()
    assert len(before[0]) == 13 and len(before[1]) == 5

    changes = router.reconcile([PIN, PIN6], IOT)

    assert lab.ours() == (
        [f"90:\tfrom all to {PIN} lookup 240 proto {RT_PROTO}"],
        [f"90:\tfrom all to {PIN6} lookup 240 proto {RT_PROTO}"],
        [f"default via 10.251.2.1 dev wwan1 table 240 proto {RT_PROTO} "],
        [f"default via fd00:251:2::1 dev wwan1 table 240 proto {RT_PROTO} metric 1024 pref medium"],
    )
    assert "rule to 10.251.9.99 lookup 240 pref 90 proto unspec" in changes.removed
    assert "rule iif wwan1 to 10.251.9.9 lookup 240 pref 90 proto unspec" in changes.removed
    assert "route default via 10.251.1.1 dev wwan0 table 240 metric 5 proto boot" \
        in changes.removed
    assert changes.removed.count("rule to 10.251.9.9 lookup 240 pref 90 proto unspec") == 2
    assert "rule not from 10.251.2.3 lookup 240 pref 90 proto unspec" in changes.removed
    assert "rule from 10.251.2.2 lookup 240 pref 90 proto unspec" in changes.removed
    assert "rule -6 iif wwan1 lookup 240 pref 90 proto unspec" in changes.removed
    assert "route unreachable 10.251.60.0/24 table 240 proto boot" in changes.removed
    assert len(changes.removed) == 13 + 5  # the IPv6 default route too: replaced by ours
    assert len(changes.added) == 4
    assert not router.reconcile([PIN, PIN6], IOT)


def test_duplicates_of_our_own_rules_collapse_to_one(lab: Lab, router: Router) -> None:
    router.reconcile([PIN], IOT4)
    # An untagged twin behind ours: deleting it by its fields (protocol 0 is
    # "any" to the kernel) first hits ours, which the next pass puts back.
    add_rule_without_excl(lab, PIN)
    add_rule_without_excl(lab, PIN, RT_PROTO)  # an exact copy of ours
    assert len(lab.ours()[0]) == 3

    changes = router.reconcile([PIN], IOT4)

    assert lab.ours()[0] == [f"90:\tfrom all to {PIN} lookup 240 proto {RT_PROTO}"]
    assert sorted(changes.removed) == ["rule to 10.251.9.9 lookup 240 pref 90",
                                       "rule to 10.251.9.9 lookup 240 pref 90 proto unspec"]
    assert changes.added == ()


def test_clear_removes_exactly_what_is_ours(lab: Lab, router: Router) -> None:
    router.reconcile([PIN, OTHER, PIN6], IOT)
    lab.ip("route", "add", "10.251.50.0/24", "dev", "wwan1", "table", "240")
    lab.ip("rule", "add", "to", "10.251.9.98", "lookup", "240", "pref", "90")

    changes = router.clear()

    assert len(changes.removed) == 7 and changes.added == ()
    assert "route 10.251.50.0/24 dev wwan1 table 240 proto boot" in changes.removed
    assert lab.ours() == ([], [], [], [])
    assert router.owned() == ([], [])
    assert not router.clear()


def test_owned_lists_rules_and_routes(lab: Lab, router: Router) -> None:
    assert router.owned() == ([], [])
    router.reconcile([PIN, PIN6], IOT)
    assert router.owned() == (
        ["rule to 10.251.9.9 lookup 240 pref 90", "rule to fd00:251::9 lookup 240 pref 90"],
        ["route default via 10.251.2.1 dev wwan1 table 240",
         "route -6 default via fd00:251:2::1 dev wwan1 table 240"])


# --- what the main table and the links say --------------------------------------------------

def test_gateway_of_reads_the_main_table(lab: Lab, router: Router) -> None:
    assert router.gateway_of("wwan0") == "10.251.1.1"  # its default route
    assert router.gateway_of("wwan1") == "10.251.2.1"  # only a subnet route via it
    assert router.gateway_of("wwan2") is None  # point to point
    assert router.gateway_of("nosuchdev") is None
    assert router.gateway_of("wwan0", socket.AF_INET6) == "fd00:251:1::1"
    assert router.gateway_of("wwan1", socket.AF_INET6) is None
    # Routes in other tables (mwan3's, ours) do not count.
    lab.ip("route", "add", "default", "via", "10.251.3.1", "dev", "wwan2", "table", "2")
    assert router.gateway_of("wwan2") is None
    # The lowest metric wins among default routes.
    lab.ip("route", "add", "default", "via", "10.251.2.1", "dev", "wwan1", "metric", "20")
    lab.ip("route", "add", "default", "via", "10.251.2.3", "dev", "wwan1", "metric", "10")
    assert router.gateway_of("wwan1") == "10.251.2.3"
    for args in (("default", "via", "10.251.3.1", "dev", "wwan2", "table", "2"),
                 ("default", "via", "10.251.2.1", "dev", "wwan1", "metric", "20"),
                 ("default", "via", "10.251.2.3", "dev", "wwan1", "metric", "10")):
        lab.ip("route", "del", *args)


def test_path_of_describes_a_device(lab: Lab, router: Router) -> None:
    assert router.path_of("primary", "wwan0") == PRIMARY
    assert router.path_of("p2p", "wwan2") == P2P


def test_link_state(lab: Lab, router: Router) -> None:
    state = router.link_state("wwan1")
    assert (state.exists, state.up, state.ipv4, state.ipv6) == (
        True, True, ("10.251.2.2",), ("fd00:251:2::2",))
    assert router.link_state("wwan2").ipv4 == ("10.251.3.2",)
    ip("-n", lab.cloud, "link", "set", "gw1", "down")  # the modem side: no carrier
    assert router.link_state("wwan1").up is False
    ip("-n", lab.cloud, "link", "set", "gw1", "up")
    assert router.link_state("wwan1").up is True
    lab.ip("link", "add", "wwan3", "type", "veth", "peer", "name", "wwan3p")  # left down
    assert (router.link_state("wwan3").exists, router.link_state("wwan3").up) == (True, False)
    lab.ip("link", "del", "wwan3")
    assert router.link_state("nosuchdev") == LinkInfo("nosuchdev", exists=False)


def test_a_device_going_down_drops_the_route_and_reconcile_restores_it(
        lab: Lab, router: Router) -> None:
    lab.check_foreign = False
    router.reconcile([PIN], IOT4)
    lab.ip("link", "set", "wwan1", "down")
    assert lab.ours()[2] == []  # the kernel flushed it with the device
    assert "table 240" not in lab.route_get(PIN)
    with pytest.raises(RoutingError, match=r"^cannot put route default via 10.251.2.1 dev wwan1"):
        router.reconcile([PIN], IOT4)
    lab.ip("link", "set", "wwan1", "up")
    changes = router.reconcile([PIN], IOT4)
    assert changes.added == ("route default via 10.251.2.1 dev wwan1 table 240",)


# --- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [0, 1, 60, 253, 254, 255, 2**32, -1])
def test_bad_tables_are_refused(table: int) -> None:
    with pytest.raises(RoutingError):
        Router(table=table)
    with pytest.raises(RoutingError):
        check_table(table)


@pytest.mark.parametrize("priority", [0, 1001, 2001, 3062, 10000, 20000, 32766, 32767, 40000])
def test_bad_priorities_are_refused(priority: int) -> None:
    with pytest.raises(RoutingError):
        Router(priority=priority)
    with pytest.raises(RoutingError):
        check_priority(priority)


def test_good_values_pass() -> None:
    assert check_table(240) == 240 and check_table(61) == 61 and check_table(1000) == 1000
    assert check_priority(90) == 90 and check_priority(1000) == 1000
    assert check_priority(3063) == 3063


def test_bad_input_and_kernel_refusals_are_one_line_errors(lab: Lab, router: Router) -> None:
    with pytest.raises(RoutingError, match=r"pin is not an IP address: 'remsim.example.com'"):
        router.reconcile(["remsim.example.com"], IOT4)
    with pytest.raises(RoutingError, match="device wwan9 does not exist"):
        router.reconcile([PIN], PathSpec("iot", "wwan9", "10.251.2.1"))
    with pytest.raises(RoutingError, match="IPv4 gateway is not an IPv4 address"):
        router.reconcile([PIN], PathSpec("iot", "wwan1", "fd00:251:2::1"))
    with pytest.raises(RoutingError) as error:
        router.reconcile([PIN], PathSpec("iot", "wwan1", "10.99.9.1"))  # not on that link
    message = str(error.value)
    assert message.startswith("cannot put route default via 10.99.9.1 dev wwan1 table 240: ")
    assert "\n" not in message
    assert lab.ours()[2] == []


def test_a_missing_namespace_is_an_error_and_not_created() -> None:
    with Router(netns="rsst-no-such-namespace") as r, \
            pytest.raises(RoutingError, match="no network namespace 'rsst-no-such-namespace'"):
        r.owned()
    assert "rsst-no-such-namespace" not in ip("netns", "list").stdout


def test_without_root_it_says_run_as_root(lab: Lab) -> None:
    script = (
        "import os\n"
        # Import first: the interpreter's files may not be readable by nobody.
        "import pyroute2, socket\n"
        "from pyroute2 import IPRoute, NetNS, NetlinkError\n"
        "from remsim_supervisor.adapters.routing import Router, RoutingError, PathSpec\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "r = Router()\n"
        "print(r.owned())\n"
        "try:\n"
        "    r.reconcile(['10.251.9.9'], PathSpec('iot', 'wwan1', '10.251.2.1'))\n"
        "except RoutingError as e:\n"
        "    print(e)\n")
    out = subprocess.run(exec_in(lab.router, sys.executable, "-c", script),
                         check=False, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "([], [])",
        "cannot put route default via 10.251.2.1 dev wwan1 table 240: not permitted (run as root)",
    ]


def test_inside_an_event_loop_it_refuses_and_in_a_thread_it_works(
        lab: Lab, router: Router) -> None:
    async def main() -> Changes:
        with pytest.raises(RoutingError, match="worker thread"):
            router.reconcile([PIN], IOT4)
        return await asyncio.to_thread(router.reconcile, [PIN], IOT4)

    changes = asyncio.run(main())
    assert changes.added == ("rule to 10.251.9.9 lookup 240 pref 90",
                             "route default via 10.251.2.1 dev wwan1 table 240")


def test_changes_read_well() -> None:
    assert str(Changes()) == "no change"
    assert not Changes()
    assert str(Changes(("rule to 1.2.3.4 lookup 240 pref 90",), ("route x",))) == \
        "+rule to 1.2.3.4 lookup 240 pref 90; -route x"


# --- standby paths and the supervisor's own marked traffic ------------------------------------

PRIMARY4 = PathSpec("primary", "wwan0", "10.251.1.1")
MARK = 0x10000000


def bound_source_seen_by(lab: Lab, destination: str, device: str, mark: int | None = None) -> str:
    """Like source_seen_by, from a socket bound to ``device`` (and marked)."""
    server = subprocess.Popen(
        exec_in(lab.cloud, sys.executable, "-c",
                "import socket\n"
                f"s = socket.create_server(({destination!r}, 7001))\n"
                "print('ready', flush=True)\n"
                "c, peer = s.accept()\n"
                "print(peer[0], flush=True)\n"),
        stdout=subprocess.PIPE, text=True)
    client = (
        "import socket\n"
        "s = socket.socket()\n"
        f"s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, {device.encode()!r})\n"
        + (f"s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, {mark})\n" if mark else "")
        + f"s.settimeout(5)\ns.connect(({destination!r}, 7001))\ns.close()\n")
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        subprocess.run(exec_in(lab.router, sys.executable, "-c", client), check=True, timeout=10)
        return server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait()


def test_standby_route_serves_sockets_bound_to_its_device(lab: Lab, router: Router) -> None:
    changes = router.reconcile([PIN], PRIMARY4, standby=[IOT4])
    assert "route default via 10.251.2.1 dev wwan1 table 240 metric 1" in changes.added
    assert "dev wwan0 table 240" in lab.route_get(PIN)  # unbound: the active path
    bound = lab.ip("-4", "route", "get", PIN, "oif", "wwan1").splitlines()[0]
    assert "via 10.251.2.1 dev wwan1 table 240" in bound
    assert bound_source_seen_by(lab, PIN, "wwan1") == "10.251.2.2"
    assert not router.reconcile([PIN], PRIMARY4, standby=[IOT4])
    # Swapping active and standby swaps the metrics, nothing else.
    router.reconcile([PIN], IOT4, standby=[PRIMARY4])
    assert "dev wwan1 table 240" in lab.route_get(PIN)
    assert lab.ours()[2] == [
        f"default via 10.251.2.1 dev wwan1 table 240 proto {RT_PROTO} ",
        f"default via 10.251.1.1 dev wwan0 table 240 proto {RT_PROTO} metric 1 ",
    ]


def test_marked_traffic_follows_our_table_whatever_its_destination(lab: Lab) -> None:
    with Router(240, 90, netns=lab.router, mark=MARK) as marked:
        changes = marked.reconcile([PIN], IOT4)
        assert f"rule fwmark {MARK:#x}/{MARK:#x} lookup 240 pref 90" in changes.added
        # An unpinned address: marked packets take our path, others main.
        assert "dev wwan1 table 240" in lab.ip("-4", "route", "get", OTHER, "mark",
                                               hex(MARK)).splitlines()[0]
        assert "dev wwan0" in lab.route_get(OTHER)
        assert bound_source_seen_by(lab, OTHER, "wwan1", mark=MARK) == "10.251.2.2"
        assert not marked.reconcile([PIN], IOT4)
        rules = [line for line in lab.state().splitlines() if "fwmark 0x10000000" in line]
        assert len(rules) == 2  # one per family
        marked.clear()
        assert not [line for line in lab.state().splitlines() if "fwmark 0x10000000" in line]
