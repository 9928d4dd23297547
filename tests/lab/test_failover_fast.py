"""A move's route goes in first, from the link event, and the reconcile agrees with it.

The real daemon in the lab's router namespace, the fake IonMesh in the cloud.
A raw rtnetlink socket in the router namespace, subscribed to the IPv4 route
group, records every route the kernel adds to or deletes from table 240.
The IoT carrier is lost (the router's ``wwan1`` loses carrier: its routes
stay, marked linkdown) and later the device itself is set down (the kernel
drops the routes through it); each time the daemon writes the route via the
primary first (its log says so, before the line of the move), the kernel
reports exactly one new route via ``wwan0`` at the active metric and never
deletes it, and after the reconcile the table holds exactly the primary's
route. The failback writes the IoT route first the same way and the
reconcile leaves the IoT route and the primary's standby.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork, call_in_netns
from remsim_lab.rig import Rig
from tests.conftest import LAB_INTERVAL as INTERVAL
from tests.polling import wait

RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_OIF, RTA_PRIORITY, RTA_TABLE = 4, 6, 15
NLMSGHDR = struct.Struct("=LHHLL")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
PRIMARY_ADDR = "10.251.1.2"
ACTIVE = "default via 10.251.1.1 dev wwan0 proto 253"
IOT_ACTIVE = "default via 10.251.2.1 dev wwan1 proto 253"
STANDBY = "default via 10.251.1.1 dev wwan0 proto 253 metric 1"


@dataclass(frozen=True)
class Seen:
    kind: str  # "new" or "del"
    table: int
    oif: int
    metric: int


class RouteWatch:
    """The kernel's IPv4 route announcements in the router namespace, as they come."""

    def __init__(self, netns: str) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            s.bind((0, RTMGRP_IPV4_ROUTE))
            s.setblocking(False)
            return s

        self.sock = call_in_netns(netns, make)
        self.seen: list[Seen] = []

    def read(self, table: int) -> list[Seen]:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            pos = 0
            while pos + NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, pos)
                if length < NLMSGHDR.size:
                    break
                if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                    body = pos + NLMSGHDR.size
                    rt_table = RTMSG.unpack_from(data, body)[4]
                    attrs: dict[int, bytes] = {}
                    at = body + RTMSG.size
                    while at + RTATTR.size <= pos + length:
                        alen, atype = RTATTR.unpack_from(data, at)
                        if alen < RTATTR.size:
                            break
                        attrs[atype] = data[at + RTATTR.size:at + alen]
                        at += (alen + 3) & ~3
                    self.seen.append(Seen("new" if kind == RTM_NEWROUTE else "del",
                                          _u32(attrs, RTA_TABLE, rt_table),
                                          _u32(attrs, RTA_OIF), _u32(attrs, RTA_PRIORITY)))
                pos += (length + 3) & ~3
        return [s for s in self.seen if s.table == table]

    def close(self) -> None:
        self.sock.close()


def _u32(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    return struct.unpack("=I", attrs[kind])[0] if kind in attrs else default


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000",
                     extra_config="config routing 'routing'\n\toption failback_after '1'\n") as r:
        yield r


@pytest.fixture
def watch(net: LabNetwork) -> Iterator[RouteWatch]:
    w = RouteWatch(net.router)
    yield w
    w.close()


def table_240(net: LabNetwork) -> list[str]:
    out = net.ip(net.router, "-4", "route", "show", "table", "240", check=False)
    return sorted(line.strip() for line in out.splitlines())


def index(net: LabNetwork, device: str) -> int:
    return int(net.ip(net.router, "-o", "link", "show", device).split(":", 1)[0])


def on_iot(net: LabNetwork, rig: Rig) -> None:
    """On the IoT path with the primary standing by, as the daemon last read it."""
    try:
        wait("the IoT route and the primary's standby in table 240",
             lambda: table_240(net) == sorted([IOT_ACTIVE, STANDBY]), timeout=5 * INTERVAL + 5)
    except AssertionError:
        raise AssertionError(f"{table_240(net)}\n{rig.log()[-3000:]}") from None
    # The status shows the routes the last reconcile read back: the same call
    # prepared each usable path's route for a move.
    rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2" and sorted(s["routes"]["routes"]) == [
        "route default via 10.251.1.1 dev wwan0 table 240 metric 1",
        "route default via 10.251.2.1 dev wwan1 table 240"], 5 * INTERVAL + 5, "on the IoT path")


def moved_to_primary(net: LabNetwork, rig: Rig, watch: RouteWatch, log_at: int,
                     heartbeats_at: int, ionmesh: IonMeshServer) -> None:
    wait("the reconcile after the move", lambda: table_240(net) == [ACTIVE], timeout=5)
    log = rig.log()[log_at:]
    first = log.find("routed via modem1 first: route default via 10.251.1.1 dev wwan0 table 240")
    decided = log.find("heartbeat path modem2 -> modem1")
    assert 0 <= first < decided, log[-3000:]
    assert "could not route via" not in log and "routing failed" not in log, log[-3000:]
    wait("an acknowledged heartbeat over the primary",
         lambda: any(r.client[0] == PRIMARY_ADDR and r.status == 200
                     for r in ionmesh.heartbeats("rig-router")[heartbeats_at:]))
    # The kernel's own account: one new route via wwan0 at the active metric, never
    # deleted or replaced afterwards; the only deletions are the IoT route (the kernel's
    # or the fast write's replace) and the primary's old standby (the reconcile).
    seen = watch.read(240)
    wwan0, wwan1 = index(net, "wwan0"), index(net, "wwan1")
    assert [s for s in seen if s.kind == "new"] == [Seen("new", 240, wwan0, 0)], seen
    assert Seen("del", 240, wwan0, 0) not in seen, seen
    assert Seen("del", 240, wwan0, 1) in seen, seen
    assert {s for s in seen if s.kind == "del"} <= {Seen("del", 240, wwan0, 1),
                                                      Seen("del", 240, wwan1, 0)}, seen


def test_the_move_writes_its_route_first_and_the_reconcile_agrees(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig, watch: RouteWatch) -> None:
    rig.start_daemon(netns=net.router)
    on_iot(net, rig)

    # 1. The IoT carrier is lost: wwan1's routes stay (linkdown) and the write replaces
    #    the active one.
    watch.read(240)
    watch.seen.clear()
    log_at, beats = len(rig.log()), len(ionmesh.heartbeats("rig-router"))
    net.link("iot", False)
    moved_to_primary(net, rig, watch, log_at, beats, ionmesh)

    # 2. Failback, written first too; the reconcile puts the primary's standby back.
    log_at = len(rig.log())
    net.link("iot", True)
    on_iot(net, rig)
    log = rig.log()[log_at:]
    assert "routed via modem2 first: route default via 10.251.2.1 dev wwan1 table 240" in log

    # 3. The device itself is set down: the kernel drops wwan1's routes first.
    watch.read(240)
    watch.seen.clear()
    log_at, beats = len(rig.log()), len(ionmesh.heartbeats("rig-router"))
    net.ip(net.router, "link", "set", "wwan1", "down")
    moved_to_primary(net, rig, watch, log_at, beats, ionmesh)
    assert rig.status()["heartbeat"]["path"] == "modem1"
    assert "Traceback" not in rig.log()
