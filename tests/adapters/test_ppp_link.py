"""A PPP modem's data device seen by the adapters: netlink, routing, netifd.

The device is a point-to-point unit (``ppp0``) that exists only while the
dial-up session is up; the session is the lab's (:mod:`remsim_lab.ppp`:
two ends over a pty pair, in the lab's two namespaces), the kernel objects
are real.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.network import IONMESH, LabNetwork, call_in_netns
from remsim_lab.ppp import LOCAL, REMOTE, TUN, PppSession, SessionSpec, SlipDecoder, slip_encode
from remsim_supervisor.adapters.netifd import l3_device
from remsim_supervisor.adapters.netlink import LinkMonitor
from remsim_supervisor.adapters.routing import Router


@pytest.fixture
def net() -> Iterator[LabNetwork]:
    with LabNetwork() as n:
        yield n


@pytest.fixture
def session(tmp_path: Path, net: LabNetwork) -> Iterator[PppSession]:
    port = tmp_path / "ttyUSB0"  # the modem's port pppd dials on (here a plain file)
    port.touch()
    with PppSession(SessionSpec(TUN, net.router, net.cloud, str(tmp_path / "ppp"),
                                port=str(port), lock_dir=str(tmp_path))) as s:
        yield s


def test_the_link_monitor_sees_ppp0_appear_and_vanish_with_the_session(
        net: LabNetwork, session: PppSession) -> None:
    async def watch() -> list[tuple[str, bool]]:
        events: list[tuple[str, bool]] = []
        changed = asyncio.Event()

        def on_change(name: str, up: bool) -> None:
            if name == "ppp0":
                events.append((name, up))
                changed.set()

        async def until(up: bool) -> None:
            while not events or events[-1][1] is not up:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 5)

        monitor = LinkMonitor(on_change)
        monitor.start()
        try:
            assert monitor.is_up("ppp0") is None  # no session, no device
            await asyncio.to_thread(session.dial)
            await until(True)
            await asyncio.to_thread(session.kill, "peer")  # the carrier drops the call
            await until(False)
            assert monitor.is_up("ppp0") is None  # RTM_DELLINK: gone, not merely down
        finally:
            monitor.stop()
        return events

    events = call_in_netns(net.router, asyncio.run, watch())
    assert events[-1] == ("ppp0", False) and ("ppp0", True) in events


@pytest.mark.parametrize("main_route, gateway", [
    ("default dev ppp0 metric 30", None),  # pppd's defaultroute: by device alone
    (f"default via {REMOTE} dev ppp0 metric 30", REMOTE),  # netifd's ppp-up: via the peer
])
def test_a_point_to_point_path_routes_by_device_or_via_its_peer(
        net: LabNetwork, session: PppSession, main_route: str, gateway: str | None) -> None:
    session.dial()
    net.ip(net.router, "route", "replace", *main_route.split())
    lock = Path(session.lock or "")
    assert lock.name == "LCK..ttyUSB0"
    assert int(lock.read_text()) == session.pid("client")  # the dialler holds its port
    with Router(netns=net.router) as router:
        for _ in range(100):
            info = router.link_state("ppp0")
            if info.up and info.ipv4:
                break
            time.sleep(0.05)
        assert info.ipv4 == (LOCAL,)  # the local address, not the peer's
        path = router.path_of("modem2", "ppp0")
        assert (path.device, path.gateway) == ("ppp0", gateway)
        try:
            router.reconcile([IONMESH], path)
            if gateway is None:
                assert net.table(240) == ["default dev ppp0 proto 253 scope link "]
                hop = [IONMESH, "dev", "ppp0", "table", "240"]
            else:
                assert net.table(240) == [f"default via {REMOTE} dev ppp0 proto 253 "]
                hop = [IONMESH, "via", REMOTE, "dev", "ppp0", "table", "240"]
            assert net.route_get(IONMESH).split()[:len(hop)] == hop
            assert f"src {LOCAL}" in net.route_get(IONMESH)
        finally:
            router.clear()
    assert REMOTE in net.ip(net.router, "addr", "show", "ppp0")
    session.hang_up()
    assert not lock.exists()
    assert net.ip(net.router, "link", "show", "ppp0", check=False) == ""


def test_slip_framing_round_trips_the_bytes_it_escapes() -> None:
    packets = [b"\xc0\xdb\x00plain", b"", b"\xdb\xdc\xdd\xc0"]
    line = b"".join(slip_encode(p) for p in packets)
    decoder = SlipDecoder()
    out = [p for i in range(0, len(line), 3) for p in decoder.feed(line[i:i + 3])]
    assert out == [p for p in packets if p]


@pytest.mark.parametrize("status, device", [
    ('{"up": true, "proto": "3g", "l3_device": "3g-wan"}', "3g-wan"),
    ('{"up": false, "proto": "3g", "device": "/dev/ttyUSB0"}', None),  # not a network device
    ('{"up": false, "proto": "ppp"}', None),  # the session is down: no device yet
])
def test_netifd_names_a_dial_up_interface_s_ppp_unit(
        tmp_path: Path, status: str, device: str | None) -> None:
    ubus = tmp_path / "ubus"
    ubus.write_text(f"#!/bin/sh\necho '{status}'\n")
    ubus.chmod(ubus.stat().st_mode | stat.S_IXUSR)
    assert l3_device("wan", str(ubus)) == device



def test_the_dialler_refuses_a_port_another_program_holds_as_pppd_does(
        net: LabNetwork, session: PppSession) -> None:
    lock = Path(session.lock or "")
    lock.write_text(f"{os.getpid():10d}\n")  # a live holder: this test
    with pytest.raises(RuntimeError, match="did not come up") as failed:
        session.dial(timeout=2.0)
    assert "is locked by pid" in str(failed.value)
    assert net.ip(net.router, "link", "show", "ppp0", check=False) == ""
    session.hang_up()
    assert int(lock.read_text()) == os.getpid()  # another program's lock stays
    lock.write_text(f"{2**22 + 1:10d}\n")  # stale: no such pid
    session.dial()
    assert int(lock.read_text()) == session.pid("client")
