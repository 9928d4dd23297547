"""The heartbeat path over IPv6, end to end: the real daemon in a router namespace,
real kernel policy routing (``ip -6 rule``, ``ip -6 route``) over veth carriers
that carry IPv6 from a documentation prefix with a link-local gateway, and a
real IonMesh reachable over IPv6 only (remsim_lab.network, ``ipv6=True``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import (
    ELSEWHERE,
    ELSEWHERE6,
    IONMESH6,
    MWAN3_RULE,
    LabNetwork,
    call_in_netns,
)
from remsim_lab.rig import Rig
from tests.conftest import LAB_INTERVAL as INTERVAL
from tests.polling import wait

CLIENT = "rig-router"
PRIMARY6, IOT6 = "2001:db8:1::2", "2001:db8:2::2"
URL = f"http://[{IONMESH6}]:5000/"
PIN_RULE = f"90:\tfrom all to {IONMESH6} lookup 240 proto 253"


def lab(**ipv6: object) -> Iterator[tuple[LabNetwork, IonMeshServer]]:
    with LabNetwork(**ipv6) as net:  # type: ignore[arg-type]
        server = call_in_netns(net.cloud, IonMeshServer, host=IONMESH6, port=5000,
                               heartbeat_interval=INTERVAL)
        server.start()
        try:
            yield net, server
        finally:
            server.stop()


@pytest.fixture
def v6only_iot() -> Iterator[tuple[LabNetwork, IonMeshServer]]:
    """The IoT carrier has IPv6 only; the primary is dual-stack."""
    yield from lab(ipv6_only=("iot",))


@pytest.fixture
def dual_stack() -> Iterator[tuple[LabNetwork, IonMeshServer]]:
    yield from lab(ipv6=True)


def make_rig(tmp_path: Path, extra: str = "") -> Rig:
    return Rig.for_lab(tmp_path / "rig", URL, extra_config=(
        "config routing 'routing'\n\toption failback_after '2'\n" + extra))


def acked_from(server: IonMeshServer) -> list[str]:
    return [r.client[0] for r in server.heartbeats(CLIENT) if r.status == 200]


def rules6(net: LabNetwork, pref: str = "90") -> list[str]:
    return [r for r in net.ip(net.router, "-6", "rule").splitlines() if r.startswith(f"{pref}:")]


def table6(net: LabNetwork) -> list[str]:
    return net.ip(net.router, "-6", "route", "show", "table", "240").splitlines()


def ours(net: LabNetwork) -> tuple[list[str], list[str]]:
    return [r for r in net.rules() if r.startswith("90:")], net.table(240)


def same(a: tuple[list[str], list[str]], b: tuple[list[str], list[str]]) -> bool:
    """The same rules and routes, whatever order rules of one preference are listed in."""
    return sorted(a[0]) == sorted(b[0]) and sorted(a[1]) == sorted(b[1])


def test_an_ipv6_only_iot_modem_carries_the_heartbeat_and_falls_over_to_the_primary(
        tmp_path: Path, v6only_iot: tuple[LabNetwork, IonMeshServer]) -> None:
    net, ionmesh = v6only_iot
    assert net.ip(net.router, "-4", "addr", "show", "dev", "wwan1").strip() == ""
    # The router tracks connections, as fw4 makes it: the cut-over has IPv6 flows to move.
    subprocess.run(["ip", "netns", "exec", net.router, "nft", "-f", "-"], check=True, text=True,
                   input="table inet track {\n chain out {\n"
                         "  type filter hook output priority 0;\n  ct state new accept\n }\n}\n")
    with make_rig(tmp_path) as rig:
        rig.start_daemon(netns=net.router)
        wait("a heartbeat over the IoT modem's IPv6", lambda: IOT6 in acked_from(ionmesh), 20)
        status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2"
                              and s["heartbeat"]["acked"] >= 1, 10, "the IoT path in status")
        assert status["heartbeat"]["interface"] == "wwan1"
        routes = status["routes"]
        assert [p["address"] for p in routes["pinned"]] == [IONMESH6]
        assert f"rule to {IONMESH6} lookup 240 pref 90" in routes["rules"]
        assert "route -6 default via fe80::1 dev wwan1 table 240" in routes["routes"]

        # The pin as `ip -6 rule` shows it; table 240 through the IoT modem's
        # link-local gateway (learned from an RA route), the primary standing by.
        assert rules6(net) == [PIN_RULE, "90:\tfrom all fwmark 0x10000000/0x10000000 "
                                         "lookup 240 proto 253"]
        assert table6(net) == [
            "default via fe80::1 dev wwan1 proto 253 metric 1024 pref medium",
            "default via fe80::1 dev wwan0 proto 253 metric 1025 pref medium",
        ]
        # No IPv4 route through a modem without IPv4: only the primary's standby one.
        assert net.ip(net.router, "-4", "route", "show", "table", "240").splitlines() == [
            "default via 10.251.1.1 dev wwan0 proto 253 metric 1 "]
        assert "dev wwan1 table 240" in net.route_get(IONMESH6)
        elsewhere = net.route_get(ELSEWHERE6)
        assert "dev wwan0" in elsewhere and "table" not in elsewhere  # not pinned: main

        # The IoT carrier goes down: the IPv6 route moves to the primary and a
        # heartbeat over the primary's IPv6 is acknowledged.
        seen = len(acked_from(ionmesh))
        net.link("iot", False)
        wait("the IPv6 table on the primary", lambda: "dev wwan0 table 240" in
             net.route_get(IONMESH6), 5)
        wait("a heartbeat over the primary's IPv6",
             lambda: PRIMARY6 in acked_from(ionmesh)[seen:], 2 * INTERVAL + 5)
        assert rig.status()["heartbeat"]["path"] == "modem1"
        # The cut-over after the move (the first one was at the first choice).
        cuts = wait("the cut-over after the move", lambda: re.findall(
            r"cut over (\d+) tracked connection", rig.log())[1:], 5)
        assert int(cuts[0]) >= 1, "the IPv6 flow to IonMesh was cut over"
        assert table6(net)[0] == "default via fe80::1 dev wwan0 proto 253 metric 1024 pref medium"

        # Back up: two acknowledged heartbeats bound to wwan1 (over IPv6) bring the path back.
        net.link("iot", True)
        rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2", 5 * INTERVAL + 5, "failback")
        wait("the IPv6 table back on wwan1",
             lambda: "dev wwan1 table 240" in net.route_get(IONMESH6), 3)
        assert acked_from(ionmesh)[-1] == IOT6

        # The IoT modem's IPv6 address goes (its prefix expired, say) while the link
        # stays up: an address event, and the path moves to the primary.
        net.ip(net.router, "-6", "addr", "del", f"{IOT6}/64", "dev", "wwan1")
        status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem1", 10,
                              "the move when the address went")
        assert "wwan1 has no address" in status["heartbeat"]["moves"][-1]["reason"]
        assert "dev wwan0 table 240" in net.route_get(IONMESH6)

        # Orderly stop: every -6 (and -4) rule and route of ours is gone, nothing else.
        assert rig.stop_daemon() == 0
    assert rules6(net) == [] and table6(net) == []
    assert ours(net) == ([], [])
    assert any(r.startswith("1001:") and "iif wwan0 lookup 1" in r for r in net.rules())


def test_dual_stack_routes_follow_a_move_and_a_crash_is_repaired_at_start(
        tmp_path: Path, dual_stack: tuple[LabNetwork, IonMeshServer]) -> None:
    net, ionmesh = dual_stack
    extra = f"\tlist pin '{ELSEWHERE}'\n\tlist pin '{ELSEWHERE6}'\n"
    with make_rig(tmp_path, extra) as rig:
        rig.start_daemon(netns=net.router)
        wait("a heartbeat over the IoT modem's IPv6", lambda: IOT6 in acked_from(ionmesh), 20)
        wait("both pins through wwan1", lambda: all(
            "dev wwan1 table 240" in net.route_get(a) for a in (ELSEWHERE, ELSEWHERE6)), 5)

        # Both families' routes follow the path to the primary, and back.
        net.link("iot", False)
        wait("both pins through wwan0", lambda: all(
            "dev wwan0 table 240" in net.route_get(a) for a in (ELSEWHERE, ELSEWHERE6)), 5)
        net.link("iot", True)
        rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2", 5 * INTERVAL + 5, "failback")
        settled = [
            "default via 10.251.2.1 dev wwan1 proto 253 ",
            "default via 10.251.1.1 dev wwan0 proto 253 metric 1 ",
            "default via fe80::1 dev wwan1 proto 253 metric 1024 pref medium",
            "default via fe80::1 dev wwan0 proto 253 metric 1025 pref medium",
        ]
        wait("both families back through wwan1, the primary standing by",
             lambda: net.table(240) == settled, 3)
        first = ours(net)
        # Per family: the pins and the mark rule; the active and the standby route.
        assert len(first[0]) == 2 + 2 + 1 and len(first[1]) == 4, first

        # A crash leaves everything behind; a hand adds a stale -6 pin and route.
        assert rig.daemon is not None
        rig.daemon.kill()
        rig.daemon.wait()
        rig.daemon = None
        assert ours(net) == first
        net.ip(net.router, "-6", "rule", "add", "to", "2001:db8:9::77", "lookup", "240",
               "pref", "90")
        net.ip(net.router, "-6", "route", "add", "2001:db8:77::/64", "via", "fe80::1",
               "dev", "wwan1", "table", "240")
        assert len(ours(net)[0]) == 6 and len(ours(net)[1]) == 5

        # The next start repairs: exactly one copy of each, the stale ones gone.
        seen = len(acked_from(ionmesh))
        rig.start_daemon(netns=net.router)
        wait("a heartbeat after the restart", lambda: len(acked_from(ionmesh)) > seen, 20)
        try:
            wait("the leftovers removed", lambda: same(ours(net), first), 5)
        finally:
            print("before the crash:", first, "\nafter the restart:", ours(net))
        assert rig.stop_daemon() == 0
    assert ours(net) == ([], [])
    mwan3 = [r for r in net.rules() if r.startswith("1001:")]
    assert len(mwan3) == 1 and " ".join(MWAN3_RULE[2:]) in mwan3[0]


def test_the_heartbeat_command_pins_ionmesh_over_ipv6_without_a_daemon(
        tmp_path: Path, v6only_iot: tuple[LabNetwork, IonMeshServer]) -> None:
    net, ionmesh = v6only_iot
    with make_rig(tmp_path) as rig:
        shown = subprocess.run(
            ["ip", "netns", "exec", net.router, sys.executable, "-m", "remsim_supervisor",
             "test-heartbeat", "-c", str(rig.config_path), "--via", "iot", "--count", "2"],
            capture_output=True, text=True, timeout=60, env=rig.environment())
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert acked_from(ionmesh)[-2:] == [IOT6, IOT6]
    assert ours(net) == ([], [])
