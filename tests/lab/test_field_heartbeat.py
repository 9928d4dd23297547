"""The heartbeat service against a scripted IonMesh, on an injected clock.

No network: the IonMesh client and the kernel router are stand-ins that
answer as scripted, so each rule is shown on its own: a server's failure
never moves the path nor reaches the guardian, a path's does; numbers are
clamped; a persistent 404 is counted; what a carrier forgetting idle flows
teaches is used; the guardian watches the heartbeat's own schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from remsim_supervisor.adapters.routing import PathSpec
from remsim_supervisor.config import (
    Config,
    EscalationConfig,
    IonmeshConfig,
    ModemConfig,
    RoutingConfig,
    SupervisorConfig,
)
from remsim_supervisor.core.ionmesh import (
    Assignment,
    Exchange,
    HeartbeatResult,
    IonMeshUnavailable,
    NotRegistered,
)
from remsim_supervisor.supervisor.actions import HeartbeatView
from remsim_supervisor.supervisor.guardian import Guardian, GuardianSettings
from remsim_supervisor.supervisor.heartbeat import ACKED, PATH, SERVER, HeartbeatService, ModemView


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Link:
    up: bool = True
    ipv4: list[str] = field(default_factory=lambda: ["10.0.0.2"])


class Router:
    """The kernel side: both modems' links up; reconciling changes nothing."""

    def link_state(self, device: str) -> Link:
        return Link()

    def path_of(self, name: str, device: str) -> PathSpec:
        return PathSpec(name, device, "10.0.0.1")

    def reconcile(self, pins: Any, path: Any, standby: Any) -> None:
        return None

    def owned(self) -> tuple[list[str], list[str]]:
        return [], []


def assignment(interval: int | None = 60) -> Assignment:
    return Assignment(1, 0, None, None, None, 9999, None, interval, None)


def ack(interval: int | None = 60, *, stale: float | None = None, commands: tuple[Any, ...] = (),
        total: int = 0, problems: tuple[str, ...] = ()) -> HeartbeatResult:
    exchange = Exchange(200, 5.0, 300, 200, False, "10.0.0.2:1234", {}, stale)
    return HeartbeatResult(exchange, interval, commands, total, problems)


def server_error(status: int = 500) -> IonMeshUnavailable:
    return IonMeshUnavailable(f"IonMesh at http://10.9.9.9:5000 failed heartbeat ({status}: "
                              "Injected failure): server trouble, retrying later", status=status)


def not_registered() -> NotRegistered:
    return NotRegistered("IonMesh at http://10.9.9.9:5000 does not know client 'r' "
                         "(404: Client not registered): register again", status=404)


def dead_path() -> IonMeshUnavailable:
    return IonMeshUnavailable("IonMesh at http://10.9.9.9:5000 did not answer heartbeat within "
                              "10 s")


Reply = Any  # an answer, an exception to raise, or a callable giving one


class Client:
    """The IonMesh client as scripted: ``register`` and ``heartbeat`` pop their replies."""

    timeout = 10.0
    bind_device = None

    def __init__(self) -> None:
        self.registers: list[Reply] = []
        self.heartbeats: list[Reply] = []
        self.idle: float | None = None
        self.aborts = 0
        self.calls: list[str] = []

    def _next(self, script: list[Reply], default: Callable[[], Any]) -> Any:
        reply = script.pop(0) if script else default()
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def register(self, hardware: Any = None) -> Assignment:
        self.calls.append("register")
        return self._next(self.registers, assignment)  # type: ignore[no-any-return]

    def heartbeat(self, status: str, stats: Any, info: Any) -> HeartbeatResult:
        self.calls.append("heartbeat")
        return self._next(self.heartbeats, ack)  # type: ignore[no-any-return]

    def idle_s(self) -> float | None:
        return self.idle

    def close(self, *, abort: bool = False) -> None:
        self.aborts += abort


def make_config(grace: int = 300, margin: int = 30, timeout: float = 10.0) -> Config:
    return Config(
        path="/dev/null",
        supervisor=SupervisorConfig(grace_period=grace),
        ionmesh=IonmeshConfig(url="http://10.9.9.9:5000", client_id="r", timeout=timeout),
        modems=(ModemConfig("modem1", "primary", device="wwan0"),
                ModemConfig("modem2", "iot", device="wwan1")),
        routing=RoutingConfig(),
        escalation=EscalationConfig(margin=margin),
    )


@dataclass
class Rig:
    service: HeartbeatService
    client: Client
    clock: Clock
    failures: list[str]

    def beat(self) -> str:
        async def go() -> str:
            await self.service.keeper.refresh()
            return await self.service._beat()

        return asyncio.run(go())


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


def make_rig(tmp_path: Path, config: Config | None = None) -> Rig:
    config = config or make_config()
    clock = Clock()
    views = [ModemView("modem1", "primary", "wwan0", "ec25", {}),
             ModemView("modem2", "iot", "wwan1", "fm350gl", {})]
    service = HeartbeatService(config, lambda: views, state_dir=str(tmp_path), router=Router(),
                               clock=clock)
    client = Client()
    service._client_for = (  # type: ignore[method-assign]
        lambda modem: client)  # type: ignore[assignment,return-value]
    failures: list[str] = []
    service.on_failure = failures.append
    return Rig(service, client, clock, failures)


# --- server failures and path failures ------------------------------------------------------------

def test_a_server_error_keeps_the_path_and_never_reaches_the_guardian(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remsim_supervisor.supervisor.heartbeat")
    hb = rig.service
    assert rig.beat() == ACKED and hb.path.active == "modem2"
    for _ in range(8):
        rig.clock.now += 15
        rig.client.heartbeats.append(server_error())
        assert rig.beat() == SERVER
        assert hb.path.active == "modem2", "a server that answers proves the path works"
        assert hb.modem_ok("modem2")  # what the guardian asks: still able to carry it
    assert rig.failures == [] and [m["to"] for m in hb.moves] == ["modem2"]  # the first only
    status = hb.status()["heartbeat"]
    assert status["failed"] == 8 and status["acked"] == 1
    assert status["server_error"]["count"] == 8 and status["server_error"]["since_s"] == 105.0
    assert "500: Injected failure" in status["server_error"]["message"]
    assert hb.server_trouble is not None and hb.server_trouble.retry_in(hb.interval) == 60.0
    # The grace runs down: status and the log say the SIM is at risk, and why.
    risk = hb.grace()["at_risk"]
    assert risk is not None and "IonMesh answers but does not acknowledge" in risk
    assert "no modem is reset" in risk
    assert sum("the remote SIM is at risk" in r.message for r in caplog.records) == 1
    # The server recovers: so does everything.
    rig.clock.now += 15
    assert rig.beat() == ACKED
    status = hb.status()["heartbeat"]
    assert status["server_error"] is None and hb.grace()["at_risk"] is None
    assert "acknowledges heartbeats again, after 8 error(s) over 120 s" in caplog.text


def test_the_retry_after_a_server_error_comes_sooner_than_an_interval(rig: Rig) -> None:
    hb = rig.service
    rig.beat()
    delays = []
    for _ in range(4):
        rig.client.heartbeats.append(server_error(502))
        rig.beat()
        assert hb.server_trouble is not None
        delays.append(hb.server_trouble.retry_in(hb.interval))
    assert delays == [15.0, 30.0, 60.0, 60.0]


def test_a_dead_path_moves_the_heartbeat_and_tells_the_guardian(rig: Rig) -> None:
    hb = rig.service
    rig.beat()
    rig.client.heartbeats.append(dead_path())
    assert rig.beat() == ACKED  # the retry over the primary, at once
    assert hb.path.active == "modem1" and rig.failures == ["modem2"]
    assert hb.server_trouble is None


@pytest.mark.parametrize("status", [302, 400, 401, 503])
def test_any_answer_is_a_server_failure(rig: Rig, status: int) -> None:
    rig.beat()
    rig.client.heartbeats.append(server_error(status))
    assert rig.beat() == SERVER
    assert rig.service.path.active == "modem2" and rig.failures == []


def test_an_answer_nobody_foresaw_is_survived(rig: Rig) -> None:
    rig.beat()
    rig.client.heartbeats.append(ValueError("a shape nobody foresaw"))
    assert rig.beat() == SERVER
    assert rig.service.path.active == "modem2" and rig.failures == []


def test_a_persistent_404_counts_every_failed_heartbeat_and_shows_the_newest_error(
        rig: Rig) -> None:
    hb = rig.service
    rig.beat()
    rig.client.heartbeats += [not_registered(), not_registered()]
    assert rig.beat() == SERVER
    assert rig.client.calls[-3:] == ["heartbeat", "register", "heartbeat"]
    assert hb.failed == 2 and hb.sent == 3
    assert "404" in (hb.last_error or "") and "still unknown" in (hb.last_error or "")
    # Next round, registering again fails in its turn: that is the newest phase.
    rig.client.registers.append(server_error(503))
    assert rig.beat() == SERVER
    assert rig.client.calls[-1] == "register"
    assert hb.failed == 3 and "503" in (hb.last_error or "")
    assert rig.failures == [] and hb.path.active == "modem2"


# --- numbers from the server ----------------------------------------------------------------------

def test_the_interval_is_clamped_and_each_clamp_logged_once(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    hb = rig.service
    assert hb.interval_bounds == (10.0, 260.0)
    rig.client.registers.append(assignment(10**9))
    rig.client.heartbeats.append(ack(None))
    rig.beat()
    assert hb.interval == 260.0  # from the registration answer too
    for _ in range(3):
        rig.client.heartbeats.append(ack(10**9))
        rig.beat()
        assert hb.interval == 260.0
        assert hb.last_ack is not None
        assert hb.grace(hb.last_ack + hb.interval + 10)["remaining_s"] >= 30
    clamps = [r.message for r in caplog.records if "asked" in r.message]
    assert len(clamps) == 1 and "1000000000 s: using 260 s" in clamps[0]
    rig.client.heartbeats.append(ack(1))
    rig.beat()
    assert hb.interval == 10.0
    assert "every 1 s: using 10 s (ionmesh.min_heartbeat_interval)" in caplog.text
    rig.client.heartbeats.append(ack(45))
    rig.beat()
    assert hb.interval == 45.0


def test_problems_in_answers_are_warned_once(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    problem = ("next_heartbeat_interval '²' is not a positive number of at most 12 digits: "
               "ignored")
    for _ in range(3):
        rig.client.heartbeats.append(ack(None, problems=(problem,)))
        assert rig.beat() == ACKED
    assert caplog.text.count(problem) == 1
    assert rig.service.interval == 60.0


def test_commands_are_summarised_in_one_line(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remsim_supervisor.supervisor.heartbeat")
    rig.client.heartbeats.append(ack(commands=(0,) * 16, total=20_000))
    rig.beat()
    lines = [r.message for r in caplog.records if "command" in r.message]
    assert len(lines) == 1
    assert "20000 command(s)" in lines[0] and lines[0].endswith("0, 0, 0 and 19997 more")


# --- carriers that forget idle flows --------------------------------------------------------------

def test_a_forgotten_flow_teaches_a_fresh_connection_after_that_idle_time(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remsim_supervisor.supervisor.heartbeat")
    hb = rig.service
    rig.client.idle = 250.0
    rig.beat()
    assert rig.client.aborts == 0  # nothing learned yet
    rig.client.heartbeats.append(ack(stale=240.0))  # dead after 240 s idle, fresh one worked
    rig.beat()
    assert hb.status()["heartbeat"]["idle_limit_s"] == {"modem2": 240.0}
    assert "modem2's carrier forgot a connection idle for 240 s" in caplog.text
    rig.client.idle = 200.0
    rig.beat()
    assert rig.client.aborts == 1  # past 240 * 0.8: fresh, without waiting a timeout
    rig.client.idle = 100.0
    rig.beat()
    assert rig.client.aborts == 1  # short idle: the kept-alive connection is still good
    assert rig.failures == [] and hb.path.active == "modem2"


# --- the schedule, watched by the guardian --------------------------------------------------------

def test_the_guardian_notices_a_heartbeat_behind_its_schedule(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="remsim_supervisor.supervisor.guardian")
    hb = rig.service
    guardian = Guardian(SimpleNamespace(), HeartbeatView(hb),  # type: ignore[arg-type]
                        GuardianSettings.from_config(hb.config), clock=rig.clock)
    rig.beat()
    assert guardian.watch_schedule(rig.clock.now + 60) is None
    assert guardian.watch_schedule(rig.clock.now + 70) is None  # interval + timeout
    hb._beat_requested = False
    rig.clock.now += 75
    fault = guardian.watch_schedule(rig.clock.now)
    assert fault is not None and "no heartbeat attempted for 75 s" in fault
    assert hb.status()["heartbeat"]["schedule_fault"] == fault
    assert hb._beat_requested, "a heartbeat is asked for at once"
    guardian.watch_schedule(rig.clock.now + 1)
    assert caplog.text.count("behind its schedule") == 1
    rig.beat()
    assert guardian.watch_schedule(rig.clock.now) is None
    assert hb.status()["heartbeat"]["schedule_fault"] is None
    assert "back on its schedule" in caplog.text
    # An attempt under way is not a fault until it is clearly stuck.
    hb.in_flight_since = rig.clock.now
    assert guardian.watch_schedule(rig.clock.now + 40) is None
    assert guardian.watch_schedule(rig.clock.now + 50) is not None


def test_outcomes_are_named(rig: Rig) -> None:
    assert {ACKED, SERVER, PATH} == {"acked", "server", "path"}
