"""The LAN failover end to end: the real daemon in a router namespace with a wired
WAN and two modems' carriers (remsim_lab.lanlab), a LAN client behind it, real
policy routing, real probes, real conntrack."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.lanlab import LanLabNetwork
from remsim_lab.network import ELSEWHERE, IONMESH, call_in_netns
from remsim_lab.rig import Rig
from tests.polling import wait

HOLD = 2  # lan.failback_hold
INTERVAL = 0.5  # lan.probe_interval
IOT_ADDR = "10.251.2.2"


def lan_section(cap_mb: str = "50") -> str:
    return (
        "config lan 'lan'\n"
        "\toption enabled '1'\n"
        "\tlist uplink 'eth1'\n"
        "\tlist uplink 'primary'\n"
        "\tlist uplink 'iot'\n"
        f"\tlist probe '{ELSEWHERE}'\n"
        f"\toption probe_interval '{INTERVAL}'\n"
        "\toption probe_timeout '0.4'\n"
        "\toption probe_failures '2'\n"
        f"\toption failback_hold '{HOLD}'\n"
        f"\toption iot_daily_cap_mb '{cap_mb}'\n"
    )


@pytest.fixture
def lan_net() -> Iterator[LanLabNetwork]:
    with LanLabNetwork() as n:
        yield n


@pytest.fixture
def lan_ionmesh(lan_net: LanLabNetwork) -> Iterator[IonMeshServer]:
    server = call_in_netns(lan_net.cloud, IonMeshServer, host=IONMESH, port=5000,
                           heartbeat_interval=3)
    server.start()
    yield server
    server.stop()


def make_rig(root: Path, cap_mb: str = "50") -> Rig:
    return Rig.for_lab(root, f"http://{IONMESH}:5000", extra_config=lan_section(cap_mb))


def lan(rig: Rig) -> dict[str, Any]:
    return rig.status()["lan"]


def via(net: LanLabNetwork, device: str) -> bool:
    """The client's traffic to the cloud is forwarded through ``device`` by the LAN's table."""
    route = net.client_route(ELSEWHERE)
    return f"dev {device} table 241" in route


def client_flow(net: LanLabNetwork) -> None:
    """One UDP packet from the LAN client to the cloud: a masqueraded conntrack entry."""
    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"lan flow", (ELSEWHERE, 9999))
    call_in_netns(net.client, send)


def test_lan_fails_over_on_link_and_on_silence_and_comes_back(
        tmp_path: Path, lan_net: LanLabNetwork, lan_ionmesh: IonMeshServer) -> None:
    net = lan_net
    with make_rig(tmp_path / "rig") as rig:
        rig.start_daemon(netns=net.router)
        rig.wait_for(lambda s: s["lan"].get("active") == "eth1", 20, "the LAN on the WAN")
        wait("the LAN's route via eth1", lambda: via(net, "eth1"))
        rules = net.ip(net.router, "rule")
        assert "96:\tfrom all lookup main suppress_prefixlength 0" in rules
        assert "97:\tfrom all lookup 241" in rules
        # The heartbeat path's pinned host keeps its own table, ahead of the LAN's.
        rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "a heartbeat")
        assert "table 240" in net.route_get(IONMESH)

        # The WAN's link goes down: the LAN moves to the primary modem on the
        # link event itself (how fast: bench/lan_failover.py).
        net.link("wan", False)
        wait("the LAN's route via the primary", lambda: via(net, "wwan0"), 5, 0.005)
        status = lan(rig)
        assert status["active"] == "primary" and status["reason"] == "failover: eth1: link down"
        assert status["last_move"]["trigger"] == "link eth1 down"

        # The WAN comes back: failback only after the hold.
        net.link("wan", True)
        back = time.monotonic()
        rig.wait_for(lambda s: s["lan"]["failback_to"] == "eth1", 5, "the failback wait")
        assert via(net, "wwan0")
        wait("failback to the WAN", lambda: via(net, "eth1"), HOLD + 5)
        assert time.monotonic() - back >= HOLD - 0.1
        assert lan(rig)["reason"] == f"failback: eth1 usable for {HOLD} s"

        # A silent WAN (link up, everything dropped): the probes move the LAN in
        # seconds, and the client's flow masqueraded out of eth1 is cut over.
        client_flow(net)
        cut_before = lan(rig)["flows_cut"]
        net.blackhole("wan", True)
        wait("the LAN off the silent WAN", lambda: via(net, "wwan0"), 10)
        status = rig.wait_for(lambda s: s["lan"]["flows_cut"] > cut_before, 5, "the cut-over")
        assert status["lan"]["reason"] == "failover: eth1: probes unanswered"
        assert status["lan"]["last_move"]["trigger"] == "probes"
        wan = next(u for u in status["lan"]["uplinks"] if u["name"] == "eth1")
        assert (wan["usable"], wan["probe"]) == (False, False)
        # The WAN is probed through its own table meanwhile: it answers again, and
        # after the hold the LAN goes back.
        net.blackhole("wan", False)
        wait("failback after the silence", lambda: via(net, "eth1"), HOLD + 10)
        assert lan(rig)["moves"] == 5  # the start, and two round trips

        # The WAN and the primary both down: the IoT modem carries the LAN, within its cap.
        net.link("wan", False)
        net.link("primary", False)
        wait("the LAN on the IoT modem", lambda: via(net, "wwan1"), 10)
        iot = next(u for u in lan(rig)["uplinks"] if u["kind"] == "iot")
        assert iot["cap_mb"] == 50.0 and iot["used_today_mb"] < 50
    assert rig.daemon is None
    # An orderly stop removes exactly what the policy made.
    prefs = {line.split(":")[0] for line in net.ip(net.router, "rule").splitlines()}
    assert not prefs & {"95", "96", "97"}, prefs
    assert net.table(241) == [] and net.table(242) == []


def test_iot_modem_only_within_its_daily_cap(
        tmp_path: Path, lan_net: LanLabNetwork, lan_ionmesh: IonMeshServer) -> None:
    net = lan_net
    net.link("wan", False)
    net.link("primary", False)
    with make_rig(tmp_path / "rig", cap_mb="0.2") as rig:
        rig.start_daemon(netns=net.router)
        rig.wait_for(lambda s: s["lan"].get("active") == "iot", 20, "the LAN on the IoT modem")
        wait("the LAN's route via wwan1", lambda: via(net, "wwan1"))

        # 300 kB arrive on the IoT modem: past its 0.2 MB cap, it stops carrying the LAN.
        def flood() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(250):
                    s.sendto(b"x" * 1200, (IOT_ADDR, 9))
        call_in_netns(net.cloud, flood)
        status = rig.wait_for(lambda s: s["lan"]["active"] is None, 10, "the cap to stop it")
        iot = next(u for u in status["lan"]["uplinks"] if u["kind"] == "iot")
        assert iot["problem"] == "daily cap reached" and iot["used_today_mb"] >= 0.2
        assert status["lan"]["state"] == "no usable uplink"
        # The LAN's table is emptied: the main table decides, as without the policy.
        wait("the LAN's table emptied", lambda: net.table(241) == [], 5)
        assert "table 241" not in net.client_route(ELSEWHERE)


def test_mwan3_present_the_lan_is_left_to_it(
        tmp_path: Path, lan_net: LanLabNetwork, lan_ionmesh: IonMeshServer) -> None:
    net = lan_net
    # mwan3's interface rule: its fwmark within 0x3f00, at its preferences.
    net.ip(net.router, "rule", "add", "pref", "2001", "fwmark", "0x100/0x3f00", "lookup", "1")
    with make_rig(tmp_path / "rig") as rig:
        rig.start_daemon(netns=net.router)
        status = rig.wait_for(lambda s: s["lan"]["state"] == "left to mwan3", 20,
                              "the LAN left to mwan3")
        assert "mwan3's rules in place" in status["lan"]["mwan3"]
        rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "a heartbeat")
        net.link("wan", False)
        time.sleep(1.5)
        prefs = {line.split(":")[0] for line in net.ip(net.router, "rule").splitlines()}
        assert not prefs & {"95", "96", "97"}, prefs
        assert net.table(241) == [] and net.table(242) == []
        assert "the LAN is left to it" in rig.log()
        assert "table 240" in net.route_get(IONMESH)  # the heartbeat path is still ours


def test_a_reload_turns_the_policy_off_and_on(
        tmp_path: Path, lan_net: LanLabNetwork, lan_ionmesh: IonMeshServer) -> None:
    net = lan_net
    with make_rig(tmp_path / "rig") as rig:
        rig.start_daemon(netns=net.router)
        rig.wait_for(lambda s: s["lan"].get("active") == "eth1", 20, "the LAN on the WAN")
        config = rig.config_path.read_text()
        rig.config_path.write_text(config.replace("\toption enabled '1'\n",
                                                  "\toption enabled '0'\n"))
        answer = rig.request({"cmd": "reload"})
        assert answer.get("ok"), answer
        rig.wait_for(lambda s: s["lan"] == {"enabled": False, "state": "off"}, 10, "off")
        wait("the LAN's rules gone", lambda: not {
            line.split(":")[0] for line in net.ip(net.router, "rule").splitlines()
        } & {"95", "96", "97"}, 5)
        assert net.table(241) == []
        rig.config_path.write_text(config)
        assert rig.request({"cmd": "reload"}).get("ok")
        rig.wait_for(lambda s: s["lan"].get("active") == "eth1", 20, "the LAN on the WAN again")
        wait("the LAN's route via eth1 again", lambda: via(net, "eth1"))
