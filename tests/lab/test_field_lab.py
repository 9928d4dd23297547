"""A hostile or flaky field, end to end: the real daemon in the lab network (router and
cloud namespaces, veth carriers, emulated modems, a real HTTP IonMesh in the cloud).

Scaled to the lab: IonMesh asks for a heartbeat every 2 s (60 s on a real one)
and the request timeout is 1.5 s. The server's faults share one daemon run:

* IonMesh answers 500 for 16 s, eight intervals and longer than the guardian
  waits before it calls a modem down (a real outage of a minute at a 60 s
  interval is one interval): the path must not move and no modem may be
  touched, while status and the log say the SIM is at risk;
* a redirect to another host, an answer that is not JSON, a 200 MB answer
  (streamed by the server, never held), one dripping a byte a second;
* intervals of 1, 10^9, "²" and 400 digits; 20,000 commands; 404 forever.

There ``escalation.margin`` is 295 of the 300 s grace, so that the longest
interval the supervisor takes from the server (grace - margin - timeout) is
3.5 s: the clamp is then seen within seconds, and "the grace never falls below
the margin" is measured.

The carrier test runs a carrier that forgets TCP flows idle for 1 s under a
2 s interval (a carrier forgetting after 5 s under an 8 s interval, scaled:
forgetting still comes before the next heartbeat).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.rig import Rig
from tests.polling import wait

CLIENT = "rig-router"
IOT_ADDR = "10.251.2.2"
INTERVAL = 2
TIMEOUT = 1.5




def acks(server: IonMeshServer) -> list[tuple[float, str]]:
    return [(r.time, r.client[0]) for r in server.heartbeats(CLIENT) if r.status == 200]


def no_recovery(rig: Rig, status: dict[str, Any]) -> None:
    assert status["recoveries"] == [], status["recoveries"]
    assert "recovery step" not in rig.log()
    for name in ("modem1", "modem2"):
        assert rig.modem_status(name, status)["state"] in ("registered", "connected")


@pytest.fixture
def fast_server(ionmesh: IonMeshServer) -> IonMeshServer:
    ionmesh.heartbeat_interval = INTERVAL
    return ionmesh


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", timeout=TIMEOUT,
                     extra_config="config escalation 'escalation'\n\toption margin '295'\n") as r:
        yield r


def test_a_hostile_server_never_costs_a_modem(net: LabNetwork, fast_server: IonMeshServer,
                                              rig: Rig) -> None:
    server = fast_server
    rig.start_daemon(netns=net.router)
    status = rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 2 and
                          s["heartbeat"]["path"] == "modem2", 20, "heartbeats over the IoT modem")
    assert status["heartbeat"]["interval_bounds_s"] == [2.0, 3.5]
    moves = len(status["heartbeat"]["moves"])

    def steady(s: dict[str, Any]) -> None:
        assert s["heartbeat"]["path"] == "modem2"
        assert len(s["heartbeat"]["moves"]) == moves, s["heartbeat"]["moves"]
        assert s["heartbeat"]["schedule_fault"] is None
        no_recovery(rig, s)

    # --- IonMesh answers 500 for 16 s ---
    server.set_fault("status", status=500)
    started = time.monotonic()
    seen_risk = None
    while time.monotonic() - started < 16:
        s = rig.status()
        steady(s)
        seen_risk = seen_risk or s["grace"]["at_risk"]
        time.sleep(0.5)
    s = rig.status()
    error = s["heartbeat"]["server_error"]
    assert error is not None and error["count"] >= 5 and error["since_s"] >= 12
    assert "500: Injected failure" in error["message"]
    assert seen_risk is not None and "IonMesh answers but does not acknowledge" in seen_risk
    assert "the remote SIM is at risk" in rig.log()
    during = [r for r in server.heartbeats(CLIENT) if r.time >= started]
    assert all(r.status == 500 for r in during) and len(during) >= 6
    assert {r.client[0] for r in during} == {IOT_ADDR}  # retried over the same path
    acked = s["heartbeat"]["acked"]
    server.clear_fault()
    s = rig.wait_for(lambda s: s["heartbeat"]["acked"] > acked, 2 * INTERVAL + 1,
                     "heartbeats resuming with the server")
    assert s["heartbeat"]["server_error"] is None and s["grace"]["at_risk"] is None
    steady(s)

    # --- a redirect, nonsense, a 200 MB answer, a drip ---
    faults: list[tuple[str, dict[str, Any]]] = [
        ("redirect", {"location": "http://10.251.9.10:5000/"}),
        ("garbage", {"status": 500}),
        ("huge", {"size": 200 * 1024 * 1024}),
        ("drip", {"rate": 1.0}),
    ]
    for kind, options in faults:
        before = len(server.heartbeats(CLIENT))
        server.set_fault(kind, **options)
        wait(f"a heartbeat meeting the {kind}",
             lambda: len(server.heartbeats(CLIENT)) >= before + 1,  # noqa: B023
             2 * INTERVAL + 2 * TIMEOUT)
        # (a drip ends at the client's timeout)
        s = rig.wait_for(lambda s: s["heartbeat"]["server_error"] is not None, 2 * TIMEOUT + 1,
                         f"the {kind} shown as a server error")
        steady(s)
        server.clear_fault()
        acked = s["heartbeat"]["acked"]
        steady(rig.wait_for(lambda s: s["heartbeat"]["acked"] > acked,  # noqa: B023
                            2 * INTERVAL + 2 * TIMEOUT, f"an ack after the {kind}"))
    assert server.streamed_bytes < 64 * 1024 * 1024  # the client stopped reading at its bound

    # --- numbers: 1 is raised to the minimum ---
    server.next_interval = 1
    wait("the minimum", lambda: "every 1 s: using 2 s (ionmesh.min_heartbeat_interval)"
         in rig.log(), 3 * INTERVAL)
    count = len(acks(server))
    wait("an ack at the minimum", lambda: len(acks(server)) >= count + 1, 3 * INTERVAL)
    assert rig.status()["heartbeat"]["interval_s"] == 2.0
    assert acks(server)[count][0] - acks(server)[count - 1][0] > 1.8  # never every second
    # Nonsense is ignored (with a warning): the interval stays what it was.
    for nonsense in ("²", 10**400):  # and 0, -5, 1e308, ...: tests/adapters/test_field_answers.py
        server.next_interval = nonsense
        count = len(acks(server))
        wait("an ack with nonsense", lambda c=count: len(acks(server)) >= c + 1, 3 * INTERVAL)
        assert rig.status()["heartbeat"]["interval_s"] == 2.0
    wait("the warnings", lambda: "next_heartbeat_interval '²' is not a positive number"
         in rig.log() and "next_heartbeat_interval 1000000000000000" in rig.log(), 5)
    warned = [line for line in rig.log().splitlines() if "next_heartbeat_interval 1000" in line]
    assert len(warned) == 1 and len(warned[0]) < 300  # once, shortened, one line
    # 10^9 is cut to what the grace allows, and the grace never falls below the margin.
    server.next_interval = 10**9
    wait("the clamp", lambda: "every 1000000000 s: using 3.5 s" in rig.log(), 3 * INTERVAL)
    first = len(acks(server))
    lowest = 300.0
    while len(acks(server)) < first + 2:
        s = rig.status()
        assert s["heartbeat"]["interval_s"] == 3.5
        lowest = min(lowest, s["grace"]["remaining_s"])
        time.sleep(0.1)
    gaps = [b[0] - a[0] for a, b in zip(acks(server)[first - 1:], acks(server)[first:])]
    assert len(gaps) == 2 and all(3.3 < g < 3.5 + 1.0 for g in gaps), gaps
    assert lowest >= 295, "the grace fell below the margin"
    server.next_interval = None

    # --- 20,000 commands: a summary line per answer, not 20,000 ---
    def summaries() -> list[str]:
        return [line for line in rig.log()[size:].splitlines()
                if "command(s) with the heartbeat" in line]

    size = len(rig.log())
    server.commands = [0] * 20_000
    wait("two answers with commands", lambda: len(summaries()) >= 2, 3 * INTERVAL + 2)
    server.commands = []
    count = len(acks(server))
    wait("an answer without", lambda: len(acks(server)) >= count + 2, 3 * INTERVAL + 2)
    lines = summaries()
    assert 2 <= len(lines) <= 4 and all(line.endswith("and 19997 more") for line in lines)
    assert len(rig.log()) - size < 20_000

    # --- 404 forever: every failed heartbeat counted, the newest error shown ---
    s = rig.status()
    failed = s["heartbeat"]["failed"]
    server.set_fault("status", status=404, route="/heartbeat")
    s = rig.wait_for(lambda s: s["heartbeat"]["failed"] >= failed + 4, 4 * INTERVAL + 2,
                     "failed heartbeats counted")
    assert "404" in (s["heartbeat"]["last_error"] or "")
    assert "still unknown" in s["heartbeat"]["server_error"]["message"]
    steady(s)
    server.clear_fault()
    acked = s["heartbeat"]["acked"]
    steady(rig.wait_for(lambda s: s["heartbeat"]["acked"] > acked, 3 * INTERVAL, "the end"))
    assert rig.stop_daemon() == 0


def test_a_carrier_forgetting_idle_flows_costs_no_path_change(
        net: LabNetwork, fast_server: IonMeshServer, tmp_path: Path) -> None:
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", timeout=TIMEOUT) as rig:
        rig.start_daemon(netns=net.router)
        status = rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 2 and
                              s["heartbeat"]["path"] == "modem2", 20, "heartbeats over IoT")
        moves = len(status["heartbeat"]["moves"])
        net.forget_idle_flows("iot", 1)  # forgotten after 1 s idle; a heartbeat every 2 s
        start = len(acks(fast_server))
        wait("ten more heartbeats acknowledged", lambda: len(acks(fast_server)) >= start + 10,
             10 * INTERVAL + 4 * TIMEOUT + 5)
        after = acks(fast_server)[start:start + 10]
        assert {src for _t, src in after} == {IOT_ADDR}
        status = rig.status()
        assert status["heartbeat"]["path"] == "modem2"
        assert len(status["heartbeat"]["moves"]) == moves
        assert status["recoveries"] == []
        # The carrier's habit was learned: the kept-alive connection was found dead once,
        # then each heartbeat started on a fresh one instead of waiting out a timeout.
        learned = status["heartbeat"]["idle_limit_s"].get("modem2")
        assert learned is not None and 1.0 <= learned <= INTERVAL + 0.5
        assert "modem2's carrier forgot a connection idle for" in rig.log()
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(after)]
        assert all(g < INTERVAL + 0.6 for g in gaps[1:]), gaps
        assert "heartbeat over modem2 failed" not in rig.log()
        assert rig.stop_daemon() == 0
