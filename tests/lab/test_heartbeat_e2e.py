"""The heartbeat path end to end: the real daemon in a router namespace, real
kernel policy routing over veth "carriers", a real HTTP server for IonMesh in
a cloud namespace (remsim_lab.network draws the topology)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import ELSEWHERE, IONMESH, MWAN3_RULE, LabNetwork
from remsim_lab.rig import Rig
from tests.conftest import LAB_INTERVAL as INTERVAL
from tests.polling import wait

TIMEOUT = 1.5     # ionmesh.timeout
CLIENT = "rig-router"
PRIMARY_ADDR, IOT_ADDR = "10.251.1.2", "10.251.2.2"


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", timeout=TIMEOUT,
                     extra_config="config routing 'routing'\n\toption failback_after '2'\n") as r:
        yield r


def heartbeat_sources(server: IonMeshServer) -> list[tuple[float, str]]:
    return [(r.time, r.client[0]) for r in server.heartbeats(CLIENT) if r.status == 200]




def ours(net: LabNetwork) -> tuple[list[str], list[str]]:
    rules = [r for r in net.rules() if r.startswith("90:")]
    return rules, net.table(240)


def test_heartbeat_follows_the_iot_modem_fails_over_and_back(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig) -> None:
    rig.start_daemon(netns=net.router)
    wait("a heartbeat over the IoT modem",
         lambda: any(src == IOT_ADDR for _t, src in heartbeat_sources(ionmesh)))
    status = rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 10, "an acknowledged heartbeat")
    hb = status["heartbeat"]
    assert (hb["path"], hb["interface"], hb["registered"]) == ("modem2", "wwan1", True)
    assert hb["interval_s"] == INTERVAL  # the server's, not the configured 60
    assert 200 < hb["bytes_per_heartbeat"] < 1000
    assert hb["projected_bytes_30d"] == round(hb["bytes_per_heartbeat"] * 30 * 86400 / INTERVAL)
    assert [p["address"] for p in status["routes"]["pinned"]] == [IONMESH]
    assert status["grace"]["remaining_s"] > 290
    # Only the pinned destination is steered: the rest keeps the main default route.
    assert "dev wwan1 table 240" in net.route_get(IONMESH)
    assert "dev wwan0" in net.route_get(ELSEWHERE) and "table" not in net.route_get(ELSEWHERE)

    # The IoT carrier's link goes down: the table follows within a second, and
    # a heartbeat over the primary is acknowledged without waiting an interval.
    seen = len(heartbeat_sources(ionmesh))
    t0 = time.monotonic()
    net.link("iot", False)
    wait("the table to point at the primary",
         lambda: "dev wwan0 table 240" in net.route_get(IONMESH))
    assert time.monotonic() - t0 < 1.0
    when, _src = wait("a heartbeat over the primary",
                     lambda: next(((t, s) for t, s in heartbeat_sources(ionmesh)[seen:]
                                   if s == PRIMARY_ADDR), None))
    assert when - t0 < INTERVAL
    assert rig.status()["heartbeat"]["path"] == "modem1"

    # The IoT carrier comes back: after two acknowledged heartbeats over it the
    # path moves back (hysteresis), and they were real heartbeats over wwan1.
    net.link("iot", True)
    rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2", 5 * INTERVAL + 5, "failback")
    wait("the table back on wwan1", lambda: "dev wwan1 table 240" in net.route_get(IONMESH), 2)

    # A silent blackhole on the IoT side (link up, packets dropped): one failed
    # heartbeat, then its retry over the primary, within the same interval.
    wait("a steady heartbeat over iot", lambda: heartbeat_sources(ionmesh)[-1][1] == IOT_ADDR)
    last_iot = heartbeat_sources(ionmesh)[-1][0]
    failed_before = rig.status()["heartbeat"]["failed"]
    net.blackhole("iot", True)
    when, _ = wait("the retry over the primary",
                   lambda: next(((t, s) for t, s in heartbeat_sources(ionmesh)
                                 if t > last_iot and s == PRIMARY_ADDR), None),
                   timeout=3 * INTERVAL + 5)
    # Normal spacing is one interval; the failure only adds its own timeout.
    assert when - last_iot < INTERVAL + TIMEOUT + 1.0 < 2 * INTERVAL
    status = rig.status()
    assert status["heartbeat"]["path"] == "modem1"
    assert status["heartbeat"]["failed"] == failed_before + 1
    assert "heartbeat over modem2 failed" in rig.log()
    net.blackhole("iot", False)

    # Orderly stop: unregistered, and exactly our rules and routes gone.
    assert rig.stop_daemon() == 0
    assert any(r.method == "DELETE" for r in ionmesh.requests)
    assert ours(net) == ([], [])
    assert any(r.startswith("1001:") and "iif wwan0 lookup 1" in r for r in net.rules())


def test_kill_and_restart_leave_exactly_one_copy(net: LabNetwork, ionmesh: IonMeshServer,
                                                 rig: Rig) -> None:
    rig.start_daemon(netns=net.router)
    rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "a heartbeat")
    first = ours(net)
    # IonMesh's rule and the mark rule for each family; the active and standby routes.
    assert len(first[0]) == 3 and len(first[1]) == 2, first
    assert rig.daemon is not None
    rig.daemon.kill()
    rig.daemon.wait()
    rig.daemon = None
    assert ours(net) == first  # a crash leaves them behind...
    rig.start_daemon(netns=net.router)
    rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "a heartbeat after restart")
    assert ours(net) == first  # ...and the next start neither doubles nor loses them
    assert rig.stop_daemon() == 0
    assert ours(net) == ([], [])
    mwan3 = [r for r in net.rules() if r.startswith("1001:")]
    assert len(mwan3) == 1 and " ".join(MWAN3_RULE[2:]) in mwan3[0]


def test_heartbeat_command_over_each_modem_with_and_without_daemon(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig) -> None:
    def test_heartbeat(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", net.router, sys.executable, "-m", "remsim_supervisor",
             "test-heartbeat", "-c", str(rig.config_path), *args],
            capture_output=True, text=True, timeout=60, env=rig.environment())

    rig.start_daemon(netns=net.router)
    rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "a heartbeat")
    before = len(heartbeat_sources(ionmesh))
    shown = test_heartbeat("--via", "primary", "--count", "3", "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["device"] == "wwan0"
    assert [r["status"] for r in report["results"]] == [200, 200, 200]
    assert all(r["bytes_on_wire"] > r["http_bytes"] for r in report["results"])
    assert report["results"][0]["new_connection"] and not report["results"][1]["new_connection"]
    sources = [s for _t, s in heartbeat_sources(ionmesh)[before:]]
    assert sources.count(PRIMARY_ADDR) == 3  # bound to wwan0 although the path is wwan1
    assert rig.status()["heartbeat"]["path"] == "modem2"
    assert rig.stop_daemon() == 0

    # No daemon: the command pins IonMesh for its own duration, then removes it.
    plain = test_heartbeat("--via", "modem2", "--count", "2")
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert len(lines) == 2 and "HTTP 200" in lines[0] and "bytes on the wire" in lines[0]
    assert "(registered first)" in lines[0]
    assert heartbeat_sources(ionmesh)[-1][1] == IOT_ADDR
    assert ours(net) == ([], [])

    net.blackhole("iot", True)
    dropped = test_heartbeat("--via", "iot")
    assert dropped.returncode == 1
    assert "not acknowledged" in dropped.stdout
    unknown = test_heartbeat("--via", "modem9")
    assert unknown.returncode == 2 and "no modem 'modem9'" in unknown.stderr
