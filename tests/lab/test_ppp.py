"""PPP modems end to end: the IoT modem's data device is a PPP unit, ``ppp0``.

The real daemon in the lab's router namespace, a real IonMesh in the cloud
namespace, and a dial-up session between them over a pty pair
(:mod:`remsim_lab.ppp`): the real ``pppd`` on both ends where the kernel has
PPP support, else the lab's point-to-point TUN ends, which configure ``ppp0``
as pppd does (``LOCAL peer REMOTE``, no gateway, no ARP) and, like pppd,
take it with them when the line hangs up. ``ppp0`` exists only while the
session is up: the supervisor must follow it appearing and vanishing
(``RTM_NEWLINK``/``RTM_DELLINK``), route the heartbeat through it without a
gateway, and bring it back with the ``ifup`` rung, here the lab's redial.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.ppp import LOCAL, PPPD, TUN, PppSession, SessionSpec, pppd_unavailable
from remsim_lab.rig import Rig, RigModem
from remsim_supervisor.adapters.discovery import Discovery
from tests.conftest import LAB_INTERVAL as INTERVAL
from tests.polling import wait

CLIENT = "rig-router"
PRIMARY_ADDR = "10.251.1.2"
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(params=[PPPD, TUN])
def session(request: pytest.FixtureRequest, tmp_path: Path,
            net: LabNetwork) -> Iterator[PppSession]:
    kind = request.param
    if kind == PPPD:
        why = pppd_unavailable()
        if why is not None:
            pytest.skip(f"the real pppd cannot run here: {why}")
    with PppSession(SessionSpec(kind, net.router, net.cloud, str(tmp_path / "ppp"))) as s:
        yield s


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork, session: PppSession) -> Iterator[Rig]:
    # The ifup rung runs the lab's redial for the PPP interface, as netifd's
    # ifup restarts pppd; its expected time is short so that a redial that
    # does not bring the path back is judged within seconds.
    redial = shlex.join([*session.redial_command(), "{interface}"])
    extra = ("config routing 'routing'\n\toption failback_after '2'\n"
             "config escalation 'escalation'\n\tlist step_cost 'ifup=8'\n"
             f"\toption ifup_command '{redial}'\n")
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", extra_config=extra) as r:
        # The IoT modem names netifd's interface only: its device is learned from ubus.
        del r.modems["modem2"].options["device"]
        r.modems["modem2"].options["interface"] = "wan"
        r.write_config(extra)
        yield r


def netifd_3g(tmp_path: Path) -> Path:
    """A ubus answering for netifd's ``proto 3g`` interface ``wan``: the PPP unit as
    its l3_device while the session is up, the tty as its device when down."""
    ubus = tmp_path / "ubus"
    ubus.write_text(
        '#!/bin/sh\n[ "$1 $2 $3" = "call network.interface.wan status" ] || exit 4\n'
        'if ip link show ppp0 >/dev/null 2>&1; then\n'
        '  echo \'{"up": true, "proto": "3g", "l3_device": "ppp0"}\'\n'
        'else\n'
        '  echo \'{"up": false, "proto": "3g", "device": "/dev/ttyUSB0"}\'\n'
        'fi\n')
    ubus.chmod(0o755)
    return ubus


def sources(server: IonMeshServer) -> list[str]:
    return [r.client[0] for r in server.heartbeats(CLIENT) if r.status == 200]


def test_the_heartbeat_rides_ppp0_follows_its_session_and_the_ifup_rung_redials(
        net: LabNetwork, ionmesh: IonMeshServer, session: PppSession, rig: Rig) -> None:
    session.dial()
    # The redial is the lab's module: the daemon's commands find it.
    rig.start_daemon(netns=net.router, env={
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "REMSIM_SUPERVISOR_UBUS": str(netifd_3g(rig.root)),
    })
    status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2"
                          and s["heartbeat"]["acked"] >= 1, 20, "a heartbeat over ppp0")
    assert status["heartbeat"]["interface"] == "ppp0"
    assert rig.modem_status("modem2", status)["device"] == "ppp0"  # netifd's l3_device
    wait("a heartbeat from ppp0's address", lambda: LOCAL in sources(ionmesh))
    # No gateway on a point-to-point link: the route is by device alone.
    wait("the table on ppp0", lambda: "dev ppp0 table 240" in net.route_get(IONMESH), 3)
    rig.wait_for(lambda s: "route default dev ppp0 table 240" in s["routes"]["routes"], 5,
                 "the status showing the route through ppp0")
    assert ["default", "dev", "ppp0", "proto", "253", "scope", "link"] in [
        line.split() for line in net.table(240)]
    assert "dev ppp0 table 240" in net.route_get(IONMESH)
    assert "via" not in net.route_get(IONMESH)

    # The carrier drops the call: the peer dies, the line hangs up, ppp0
    # vanishes with the client, and the heartbeat moves to the primary at once.
    seen = len(sources(ionmesh))
    session.kill("peer")
    wait("ppp0 gone", lambda: not net.ip(net.router, "link", "show", "ppp0", check=False))
    wait("the table on the primary", lambda: "dev wwan0 table 240" in net.route_get(IONMESH), 5)
    wait("a heartbeat over the primary", lambda: PRIMARY_ADDR in sources(ionmesh)[seen:],
         2 * INTERVAL + 3)
    moved = rig.status()["heartbeat"]
    assert moved["path"] == "modem1"

    # The guardian's ifup rung for the PPP modem dials again; ppp0 comes back,
    # and after two acknowledged heartbeats over it the path returns.
    status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2", 60,
                          "the path back on ppp0 after the ifup rung")
    steps = [(r["modem"], r["step"]) for r in status["recoveries"]]
    assert ("modem2", "ifup") in steps, status["recoveries"]
    ifup = next(r for r in status["recoveries"] if r["step"] == "ifup")
    assert ifup["result"] == "ok", ifup
    wait("the table back on ppp0", lambda: "dev ppp0 table 240" in net.route_get(IONMESH), 3)
    seen = len(sources(ionmesh))
    wait("heartbeats from ppp0 again", lambda: LOCAL in sources(ionmesh)[seen:], 2 * INTERVAL + 3)
    assert status["grace"]["remaining_s"] > 250

    # An orderly stop removes what the supervisor made, and nothing of pppd's.
    assert rig.stop_daemon() == 0
    assert net.table(240) == []
    assert net.ip(net.router, "link", "show", "ppp0")


@pytest.fixture
def stick_rig(tmp_path: Path) -> Iterator[Rig]:
    """The seed's Huawei LTE stick as the IoT modem, every AT port answering."""
    stick = RigModem("modem2", "iot", "me909s", "1-2", 0x12D1, 0x15C1, all_at_ports=True,
                     options={"device": "ppp0"})
    modems = [RigModem("modem1", "primary", "ec25", "1-1", 0x2C7C, 0x0125,
                       options={"device": "wwan0"}), stick]
    with Rig(tmp_path / "rig", modems, ionmesh_url=f"http://{IONMESH}:5000",
             ionmesh_options={"timeout": "1.5", "min_heartbeat_interval": "2"},
             guardian=True) as rig:
        rig.write_config()
        rig.plug("modem1")
        rig.plug("modem2")
        yield rig


def stick_ports(rig: Rig) -> tuple[str, str]:
    """The stick's main AT port (PCUI, the one the supervisor chooses) and its other
    (the modem port, where pppd usually dials)."""
    found = Discovery(rig.sysfs.sysfs_root, rig.sysfs.dev_root).find(usb_path="1-2")
    assert found is not None and found.at_tty is not None and len(found.at_ports) == 2
    main = os.path.join(rig.sysfs.dev_root, found.at_tty)
    return main, next(p for p in found.at_ports if p != main)


def test_pppd_on_the_main_at_port_leaves_the_supervisor_the_second(
        tmp_path: Path, net: LabNetwork, ionmesh: IonMeshServer, stick_rig: Rig) -> None:
    """pppd dials on the port the supervisor would choose and holds it by its lock
    when the daemon starts: the supervisor never opens it, works the modem over
    its other AT port, and the heartbeat rides the PPP unit."""
    rig = stick_rig
    main, other = stick_ports(rig)
    spec = SessionSpec(TUN, net.router, net.cloud, str(tmp_path / "ppp"), port=main,
                       lock_dir=str(rig.lock_dir))
    with PppSession(spec) as session:
        session.dial()
        dialler = session.pid("client")
        program = Path(f"/proc/{dialler}/comm").read_text().strip()
        rig.start_daemon(netns=net.router)
        status = rig.wait_for(lambda s: rig.modem_status("modem2", s)["state"] == "connected"
                              and s["heartbeat"]["path"] == "modem2", 30,
                              "the stick connected and carrying the heartbeat")
        m2 = rig.modem_status("modem2", status)
        assert m2["at_port"] == other
        assert m2["at_port_reason"] == (
            f"{os.path.basename(main)} held by pid {dialler} ({program})")
        assert status["heartbeat"]["interface"] == "ppp0"
        wait("a heartbeat from ppp0's address", lambda: LOCAL in sources(ionmesh))

        # The session ends: the modem is still registered, no longer connected.
        session.hang_up()
        status = rig.wait_for(lambda s: rig.modem_status("modem2", s)["state"] == "registered"
                              and s["heartbeat"]["path"] == "modem1", 10,
                              "the stick registered only, the heartbeat on the primary")
        assert rig.modem_status("modem2", status)["at_port"] == other


def test_pppd_dialling_after_the_supervisor_started_finds_its_port_free(
        tmp_path: Path, net: LabNetwork, ionmesh: IonMeshServer, stick_rig: Rig) -> None:
    """The boot order the other way round: the daemon is up before pppd dials on
    the stick's modem port. The supervisor has taken the main port only, so
    pppd's lock goes through, and ppp0, which did not exist at start, becomes
    the heartbeat's path once it appears."""
    rig = stick_rig
    main, other = stick_ports(rig)
    rig.start_daemon(netns=net.router)
    status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem1"
                          and rig.modem_status("modem2", s)["state"] == "registered", 30,
                          "the heartbeat on the primary, the stick registered without data")
    assert rig.modem_status("modem2", status)["at_port"] == main
    spec = SessionSpec(TUN, net.router, net.cloud, str(tmp_path / "ppp"), port=other,
                       lock_dir=str(rig.lock_dir))
    with PppSession(spec) as session:
        session.dial()  # fails if the port were locked by the supervisor
        status = rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2"
                              and rig.modem_status("modem2", s)["state"] == "connected",
                              4 * INTERVAL + 5, "the path moved to ppp0 once it appeared")
        assert status["heartbeat"]["interface"] == "ppp0"
        assert "at_port_reason" not in rig.modem_status("modem2", status)
        seen = len(sources(ionmesh))
        wait("a heartbeat from ppp0's address", lambda: LOCAL in sources(ionmesh)[seen:],
             2 * INTERVAL + 3)
