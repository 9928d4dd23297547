"""The heartbeat session's loop on simulated time: hours of heartbeats in a moment.

The clock and the sleeper are the test's: sleeping advances the clock and
fires what the test scheduled for that moment. The IonMesh client and the
routing executor are stand-ins behind their interfaces; blocking calls run
inline. Shown: the interval, the backoff after server errors, a fresh
connection after the learned idle limit, a heartbeat at once when the
guardian finds the schedule behind, and a link-down event that moves the
path and sends the next heartbeat over the primary at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
)
from remsim_supervisor.supervisor.heartbeat import HeartbeatService
from remsim_supervisor.supervisor.usage import ModemView
from tests.unit.test_pathkeeper import Router, inline

START = 1000.0


class Sim:
    """Simulated time: ``sleep`` jumps to the next scheduled moment, or to its end."""

    def __init__(self, until: float) -> None:
        self.now = START
        self.until = until
        self.events: list[tuple[float, Callable[[], None]]] = []
        self.done = asyncio.Event()

    def clock(self) -> float:
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.events.append((when, action))
        self.events.sort(key=lambda e: e[0])

    async def sleep(self, delay: float) -> None:
        for _ in range(20):  # time passes only once every other task is idle
            await asyncio.sleep(0)
        wake = self.now + delay
        if self.events and self.events[0][0] <= wake:
            when, action = self.events.pop(0)
            self.now = max(self.now, when)
            action()  # wakes the session (or not): the sleep is over either way
            await asyncio.sleep(0)
            return
        if wake > self.until:
            self.done.set()
            await asyncio.Future()  # the end of the simulation: never returns
        self.now = wake
        await asyncio.sleep(0)


class Client:
    """IonMesh as scripted; the kept-alive connection's idle time from the sim clock."""

    timeout = 10.0
    bind_device = None

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.script: list[Any] = []
        self.beats: list[tuple[float, str | None]] = []  # (when, over which modem)
        self.over: Callable[[], str | None] = lambda: None
        self.last_used: float | None = None
        self.aborts: list[float] = []

    def register(self, hardware: Any = None) -> Assignment:
        return Assignment(1, 0, None, None, None, 9999, None, None, None)

    def heartbeat(self, status: str, stats: Any, info: Any) -> HeartbeatResult:
        self.beats.append((self.sim.now, self.over()))
        reply = self.script.pop(0) if self.script else None
        if isinstance(reply, BaseException):
            raise reply
        self.last_used = self.sim.now
        stale = reply if isinstance(reply, float) else None
        exchange = Exchange(200, 5.0, 300, 200, False, "10.0.0.2:1234", {}, stale)
        return HeartbeatResult(exchange, None, ())

    def idle_s(self) -> float | None:
        return None if self.last_used is None else self.sim.now - self.last_used

    def close(self, *, abort: bool = False) -> None:
        if abort:
            self.aborts.append(self.sim.now)
        self.last_used = None


def make_config(grace: int = 300, interval: int = 60) -> Config:
    return Config(
        path="/dev/null",
        supervisor=SupervisorConfig(grace_period=grace),
        ionmesh=IonmeshConfig(url="http://10.9.9.9:5000", client_id="r",
                              heartbeat_interval=interval),
        modems=(ModemConfig("modem1", "primary", device="wwan0"),
                ModemConfig("modem2", "iot", device="wwan1")),
        routing=RoutingConfig(),
        escalation=EscalationConfig(),
    )


def session(tmp_path: Path, sim: Sim, config: Config | None = None,
            ) -> tuple[HeartbeatService, Client, Router]:
    views = [ModemView("modem1", "primary", "wwan0", None, {}),
             ModemView("modem2", "iot", "wwan1", None, {})]
    router = Router()
    hb = HeartbeatService(config or make_config(), lambda: views, state_dir=str(tmp_path),
                          router=router, clock=sim.clock, sleep=sim.sleep, offload=inline,
                          wall=lambda: 1.7e9)
    hb.keeper.flush = lambda addresses: 0
    client = Client(sim)
    client.over = lambda: hb.path.active
    hb._client_for = lambda modem: client  # type: ignore[method-assign,assignment,return-value]
    return hb, client, router


def play(hb: HeartbeatService, sim: Sim) -> None:
    async def go() -> None:
        task = asyncio.ensure_future(hb.run())
        done = asyncio.ensure_future(sim.done.wait())
        await asyncio.wait({task, done}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a failure of the loop itself
        task.cancel()
        done.cancel()

    asyncio.run(go())


def times(client: Client) -> list[float]:
    return [when - START for when, _over in client.beats]


def test_heartbeats_go_at_the_interval(tmp_path: Path) -> None:
    sim = Sim(until=START + 3600)
    hb, client, _router = session(tmp_path, sim)
    play(hb, sim)
    assert times(client) == [60.0 * n for n in range(61)]
    assert hb.acked == 61 and hb.failed == 0 and hb.path.active == "modem2"
    assert hb.status()["heartbeat"]["bytes_per_heartbeat"] == 300 + 200 + 156


def server_error() -> IonMeshUnavailable:
    return IonMeshUnavailable("IonMesh at http://10.9.9.9:5000 failed heartbeat (500: "
                              "Injected): server trouble, retrying later", status=500)


def test_server_errors_are_retried_sooner_then_backing_off_to_the_interval(
        tmp_path: Path) -> None:
    sim = Sim(until=START + 400)
    hb, client, _router = session(tmp_path, sim)
    client.script = [None] + [server_error()] * 4
    play(hb, sim)
    # 0 acked; errors at 60, then a quarter interval, doubling, never over the interval.
    assert times(client)[:7] == [0.0, 60.0, 75.0, 105.0, 165.0, 225.0, 285.0]
    assert hb.path.active == "modem2" and len(hb.keeper.moves) == 1, "the path works: it stays"
    assert hb.server_trouble is None and hb.acked == 4  # at 0, 225, 285, 345


def test_after_the_learned_idle_limit_the_heartbeat_starts_on_a_fresh_connection(
        tmp_path: Path) -> None:
    sim = Sim(until=START + 1000)
    hb, client, _router = session(tmp_path, sim, make_config(grace=900, interval=300))
    # The second heartbeat found its kept-alive connection dead after 300 s idle,
    # and a fresh one worked: the carrier forgets flows after at most 300 s.
    client.script = [None, 300.0]
    play(hb, sim)
    assert times(client) == [0.0, 300.0, 600.0, 900.0]
    assert client.aborts == [START + 600, START + 900]  # no timeout waited on a dead flow
    assert hb.status()["heartbeat"]["idle_limit_s"] == {"modem2": 300.0}


def test_a_schedule_fault_asks_for_a_heartbeat_at_once(tmp_path: Path) -> None:
    sim = Sim(until=START + 200)
    hb, client, _router = session(tmp_path, sim)
    sim.at(START + 30, lambda: hb.note_schedule_fault("no heartbeat attempted for 75 s"))
    sim.at(START + 31, lambda: hb.note_schedule_fault(None))
    play(hb, sim)
    assert times(client) == [0.0, 30.0, 90.0, 150.0]
    assert hb.last_attempt_end == START + 150 and hb.in_flight_since is None
    assert hb.status()["heartbeat"]["schedule_fault"] is None


def test_a_link_down_event_moves_the_path_and_beats_over_the_primary_at_once(
        tmp_path: Path) -> None:
    sim = Sim(until=START + 100)
    hb, client, router = session(tmp_path, sim)
    walk: list[int] = []

    def link_down() -> None:
        router.links["wwan1"].up = False
        walk.extend([len(router.reads()), len(router.tables)])
        hb.links_changed("wwan1", False)
        assert hb.path.active == "modem1"  # moved in the event's own call

    sim.at(START + 20, link_down)
    play(hb, sim)
    assert client.beats[:3] == [(START, "modem2"), (START + 20, "modem1"), (START + 80, "modem1")]
    assert [m["to"] for m in hb.moves] == ["modem2", "modem1"]
    assert router.tables[walk[1]] == ("wwan0", ()), "the route moved before the heartbeat's read"
    assert router.reads()[walk[0]:walk[0] + 1] == ["link_state wwan0"], (
        "nothing was read between the event and the route: the next read is the heartbeat's")


def test_links_changed_without_arguments_reads_again(tmp_path: Path) -> None:
    sim = Sim(until=START + 30)
    hb, _client, router = session(tmp_path, sim)
    sim.at(START + 10, hb.links_changed)
    play(hb, sim)
    reads_at_start = 4  # two devices, each link_state and path_of, before the first beat
    # one read at the start (the first heartbeat reuses it), one for the event
    assert router.reads().count("link_state wwan1") == 2, router.reads()[reads_at_start:]


@pytest.mark.parametrize("name", ["wwan9", "lo"])
def test_a_link_event_of_no_modem_moves_nothing(tmp_path: Path, name: str) -> None:
    sim = Sim(until=START + 30)
    hb, client, _router = session(tmp_path, sim)
    sim.at(START + 10, lambda: hb.links_changed(name, False))
    play(hb, sim)
    assert times(client) == [0.0] and hb.path.active == "modem2"


def reads_at_beats(tmp_path: Path, script: list[Any]) -> list[tuple[float, int]]:
    """(seconds after the start, reads of the IoT modem's link so far) at each heartbeat."""
    sim = Sim(until=START + 700)
    hb, client, router = session(tmp_path, sim)
    client.script = script
    marks: list[tuple[float, int]] = []
    beat = client.heartbeat

    def counting(*args: Any) -> HeartbeatResult:
        marks.append((sim.now - START, router.reads().count("link_state wwan1")))
        return beat(*args)

    client.heartbeat = counting  # type: ignore[method-assign]
    play(hb, sim)
    return marks


def test_acknowledged_heartbeats_read_the_kernel_only_every_reread_interval(
        tmp_path: Path) -> None:
    marks = reads_at_beats(tmp_path, [])
    # One read at the start; acked beats then read again only once REREAD_S (300 s) passed.
    assert [t for t, _ in marks] == [60.0 * i for i in range(12)]
    assert [n for _, n in marks] == [1] * 6 + [2] * 6


def test_a_heartbeat_that_was_not_acknowledged_reads_the_kernel_before_the_next(
        tmp_path: Path) -> None:
    marks = reads_at_beats(tmp_path, [None, None, server_error()])
    # The error at 120 s: its retry at 135 s reads first, and the 300 s count restarts there.
    assert marks[:4] == [(0.0, 1), (60.0, 1), (120.0, 1), (135.0, 2)]
    assert [t for t, n in marks if n == 2] == [135.0 + 60 * i for i in range(6)]
    assert marks[-1] == (675.0, 3)
