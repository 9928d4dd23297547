"""The route a move writes first, against the real kernel, in a network namespace.

A namespace of the test's own with two devices (``wwan0``, ``wwan1``: veth
links with IPv4 and IPv6 addresses, as a modem's data device has them).
Each message :func:`route_message` builds is sent on the
:class:`FastRoute` socket and the route is read back twice: with pyroute2
into the same ``Route`` value the reconcile compares (so the two agree
field by field), and as ``ip -d route show`` prints it. Then the reconcile
runs over what the fast write left and must find nothing to change for the
new path's routes.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from remsim_supervisor.adapters.fastroute import (
    FastRoute,
    Prepared,
    open_rtnetlink,
    route_message,
)
from remsim_supervisor.adapters.routing import PathSpec, Router
from remsim_supervisor.adapters.routing_msgs import route_from
from remsim_supervisor.core.routes import METRIC, RT_PROTO, Route, default_route
from tests.netns import call_in_netns, ip, netns

TABLE = 240
PRIMARY = PathSpec("modem1", "wwan0", "10.251.1.1", ipv6=True, gateway6="fd00:251:1::1")
IOT = PathSpec("modem2", "wwan1", "10.251.2.1", ipv6=True, gateway6="fd00:251:2::1")


@pytest.fixture
def ns() -> Iterator[str]:
    with netns("rsfr") as name:
        for n, dev in enumerate(("wwan0", "wwan1"), 1):
            ip("-n", name, "link", "add", dev, "type", "veth", "peer", "name", f"gw{n}")
            ip("-n", name, "link", "set", f"gw{n}", "up")
            ip("-n", name, "link", "set", dev, "up")
            ip("-n", name, "addr", "add", f"10.251.{n}.2/24", "dev", dev)
            ip("-n", name, "-6", "addr", "add", f"fd00:251:{n}::2/64", "dev", dev, "nodad")
        yield name


def fast_in(ns: str) -> FastRoute:
    return FastRoute(lambda: call_in_netns(ns, open_rtnetlink))


def index_of(ns: str, device: str) -> int:
    return int(ip("-n", ns, "-o", "link", "show", device).stdout.split(":", 1)[0])


def kernel_routes(ns: str, table: int) -> list[Route]:
    """Every route of ``table`` as the reconcile reads it (pyroute2 dump, route_from)."""
    from pyroute2 import NetNS

    with NetNS(ns, flags=0) as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        out = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.get_routes(family=family, table=table):
                route = route_from(msg, names)
                if route.table == table and route.family == family:
                    out.append(route)
    return out


def shown(ns: str, family: str, table: int) -> list[str]:
    return ip("-n", ns, family, "-d", "route", "show", "table", str(table)).stdout.splitlines()


@pytest.mark.parametrize("table", [TABLE, 1000])
def test_each_message_makes_exactly_the_route_it_was_built_from(ns: str, table: int) -> None:
    oif = index_of(ns, "wwan0")
    wanted = [
        default_route(socket.AF_INET, table, "10.251.1.1", oif, "wwan0"),
        default_route(socket.AF_INET6, table, "fd00:251:1::1", oif, "wwan0"),
        default_route(socket.AF_INET, table, None, oif, "wwan0", 3),  # point to point
        default_route(socket.AF_INET6, table, None, oif, "wwan0", 3),
    ]
    fast = fast_in(ns)
    try:
        for route in wanted:
            assert fast.write(Prepared.of("modem1", [route])) is None
    finally:
        fast.close()
    got = kernel_routes(ns, table)
    assert len(got) == len(wanted)
    for route in wanted:
        assert sum(1 for r in got if r.same(route)) == 1, (route, got)
    assert all(r.proto == RT_PROTO for r in got)
    four = shown(ns, "-4", table)
    assert any(line.startswith("unicast default via 10.251.1.1 dev wwan0 proto 253 scope global")
               for line in four), four
    assert any(line.startswith("unicast default dev wwan0 proto 253 scope link metric 3")
               for line in four), four
    six = shown(ns, "-6", table)
    assert any(line.startswith("unicast default via fd00:251:1::1 dev wwan0 proto 253 "
                               "scope global metric 1024") for line in six), six


def test_a_write_replaces_the_route_at_its_metric_and_adds_no_twin(ns: str) -> None:
    ip("-n", ns, "route", "add", "default", "via", "10.251.2.1", "dev", "wwan1", "table",
       str(TABLE), "proto", str(RT_PROTO))
    ip("-n", ns, "route", "add", "default", "via", "10.251.1.1", "dev", "wwan0", "table",
       str(TABLE), "proto", str(RT_PROTO), "metric", "1")
    route = default_route(socket.AF_INET, TABLE, "10.251.1.1", index_of(ns, "wwan0"), "wwan0")
    fast = fast_in(ns)
    try:
        assert fast.write(Prepared.of("modem1", [route])) is None
        assert fast.write(Prepared.of("modem1", [route])) is None  # twice: still one
    finally:
        fast.close()
    assert sorted(shown(ns, "-4", TABLE)) == [
        "unicast default via 10.251.1.1 dev wwan0 proto 253 scope global ",
        "unicast default via 10.251.1.1 dev wwan0 proto 253 scope global metric 1 ",
    ]


def test_a_refused_write_says_which_route_and_why(ns: str) -> None:
    gone = default_route(socket.AF_INET, TABLE, "10.251.1.1", 999_999, "wwan9")
    good = default_route(socket.AF_INET6, TABLE, "fd00:251:1::1", index_of(ns, "wwan0"), "wwan0")
    fast = fast_in(ns)
    try:
        problem = fast.write(Prepared.of("modem1", [gone, good]))
        assert problem is not None
        assert problem.startswith("route default via 10.251.1.1 dev wwan9 table 240: ")
        # The kernel's own words: no such device, or no way to the gateway through it.
        assert problem.split(": ", 1)[1] in (os.strerror(errno.ENODEV),
                                             os.strerror(errno.ENETUNREACH)), problem
        # The batch's other message went in, and the socket still works.
        assert [r.gateway for r in kernel_routes(ns, TABLE)] == ["fd00:251:1::1"]
        assert fast.write(Prepared.of("modem1", [good])) is None
    finally:
        fast.close()


def test_a_socket_that_cannot_open_is_one_line_not_a_traceback() -> None:
    def refuse() -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    fast = FastRoute(refuse)
    assert fast.open() == "not permitted (run as root)"
    route = default_route(socket.AF_INET, TABLE, "10.0.0.1", 2, "wwan0")
    assert fast.write(Prepared.of("modem1", [route])) == "not permitted (run as root)"


def test_the_reconcile_finds_the_fast_routes_in_place(ns: str) -> None:
    router = Router(TABLE, 90, netns=ns)
    try:
        router.reconcile(["10.251.9.9"], IOT, [PRIMARY])  # on the IoT path, primary standing by
        prepared = Prepared.of("modem1", router.routes_of(PRIMARY))
        assert [(r.family, r.metric) for r in prepared.routes] == [
            (socket.AF_INET, METRIC[socket.AF_INET]), (socket.AF_INET6, METRIC[socket.AF_INET6])]
        ip("-n", ns, "link", "set", "wwan1", "down")  # the kernel drops the routes through it
        fast = fast_in(ns)
        try:
            assert fast.write(prepared) is None
        finally:
            fast.close()
        # A reconcile decided before the move (the IoT path active) changes nothing
        # once told its path is no longer the one wanted.
        assert not router.reconcile(["10.251.9.9"], IOT, [PRIMARY], lambda: False)
        changes = router.reconcile(["10.251.9.9"], PRIMARY, [])
        # Only the primary's old standby routes go; the routes the move wrote stay.
        assert not changes.added, changes
        assert sorted(changes.removed) == [
            "route -6 default via fd00:251:1::1 dev wwan0 table 240 metric 1025",
            "route default via 10.251.1.1 dev wwan0 table 240 metric 1",
        ]
        assert router.reconcile(["10.251.9.9"], PRIMARY, []) == type(changes)()
        _rules, routes = router.owned()
        assert sorted(routes) == ["route -6 default via fd00:251:1::1 dev wwan0 table 240",
                                  "route default via 10.251.1.1 dev wwan0 table 240"]
    finally:
        router.close()


def test_message_layout() -> None:
    route = default_route(socket.AF_INET, 1000, "10.0.0.1", 7, "wwan0", 2)
    data = route_message(route, seq=5)
    length, kind, flags, seq, pid = struct.unpack_from("=LHHLL", data)
    assert (length, kind, flags, seq, pid) == (len(data), 24, 0x505, 5, 0)
    # rtmsg: IPv4, /0, no source, TOS 0, table 252 (it does not fit), proto 253,
    # universe, unicast; then RTA_TABLE 1000, RTA_GATEWAY, RTA_OIF 7, RTA_PRIORITY 2.
    assert data[16:28] == bytes([2, 0, 0, 0, 252, 253, 0, 1, 0, 0, 0, 0])
    assert data[28:] == (b"\x08\x00\x0f\x00" + (1000).to_bytes(4, "little")
                         + b"\x08\x00\x05\x00" + bytes([10, 0, 0, 1])
                         + b"\x08\x00\x04\x00" + (7).to_bytes(4, "little")
                         + b"\x08\x00\x06\x00" + (2).to_bytes(4, "little"))
    with pytest.raises(ValueError):
        route_message(Route(socket.AF_INET, 240, None, 0, None, None, None, 0, RT_PROTO, 0, 1,
                            multipath=True))
