"""The grace guardian on simulated time: woken by events and deadlines, never a tick.

The guardian gets fakes behind its two interfaces (the modems' actions and
the heartbeat's facts) and a clock and sleep that move only when the test
says so, so an hour of recovery plays in milliseconds and every wake-up is
visible: the test records how long the guardian asked to sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from remsim_supervisor.core.at import Response
from remsim_supervisor.supervisor.actions import BeatFacts, ModemSnapshot
from remsim_supervisor.supervisor.guardian import SETTLE_S, Guardian, GuardianSettings

GRACE, MARGIN, INTERVAL, TIMEOUT = 300.0, 30.0, 60.0, 10.0
COSTS = (("*", "reroute", 5.0), ("*", "ifup", 10.0), ("*", "radio_cycle", 10.0),
         ("*", "soft_reset", 20.0), ("*", "usb_reauth", 10.0), ("*", "gpio_reset", 20.0),
         ("*", "power_cycle", 30.0))
ALL_CAPS = frozenset({"usb", "reset_gpio", "power_gpio"})


class FakeTime:
    """A clock and a sleep that move only when the test says so; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.asked: list[tuple[float, float]] = []  # (when, how long) per sleep
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.asked.append((self.now, delay))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), future))
        await future

    async def advance(self, until: float) -> None:
        """Run everything due up to ``until``, in time order."""
        while True:
            await settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # a sleep given up on (a poke came first)
            if not self._sleepers or self._sleepers[0][0] > until:
                break
            due, _n, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            future.set_result(None)
        self.now = max(self.now, until)
        await settle()


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


@dataclass
class FakeHeartbeat:
    time: FakeTime
    ok: dict[str, bool] = field(default_factory=dict)
    acks: dict[str, float] = field(default_factory=dict)
    path: str | None = "modem2"
    last_ack: float = 0.0
    beats_asked: int = 0
    fault: str | None = None

    def facts(self) -> BeatFacts:
        now = self.time.now
        return BeatFacts(last_ack=self.last_ack, path=self.path,
                         last_attempt_end=(now // INTERVAL) * INTERVAL, in_flight_since=None,
                         interval=INTERVAL, schedule_fault=self.fault,
                         grace_left_s=GRACE - (now - self.last_ack))

    def modem_ok(self, name: str) -> bool:
        return self.ok.get(name, False)

    def acked_over_since(self, name: str, since: float) -> bool:
        return self.acks.get(name, -1.0) >= since

    def beat_now(self) -> None:
        self.beats_asked += 1

    def note_schedule_fault(self, reason: str | None) -> None:
        self.fault = reason

    def ack(self, name: str) -> None:
        self.ok[name] = True
        self.acks[name] = self.last_ack = self.time.now


@dataclass
class FakeModems:
    snaps: dict[str, ModemSnapshot]
    done: list[tuple[float, str, str]] = field(default_factory=list)
    on_action: Callable[[str, str], None] | None = None
    held_local: list[str] = field(default_factory=list)

    def snapshots(self) -> list[ModemSnapshot]:
        return list(self.snaps.values())

    def snapshot(self, name: str) -> ModemSnapshot | None:
        return self.snaps.get(name)

    async def at(self, name: str, command: str, timeout: float | None = None) -> Response:
        raise AssertionError("the guardian sends no AT command of its own")

    async def _act(self, name: str, what: str) -> bool:
        self.done.append((-1.0, name, what))
        if self.on_action is not None:
            self.on_action(name, what)
        return True

    async def radio_cycle(self, name: str) -> bool:
        return await self._act(name, "radio_cycle")

    async def soft_reset(self, name: str, reason: str) -> bool:
        return await self._act(name, "soft_reset")

    async def reset_pulse(self, name: str, reason: str) -> bool:
        return await self._act(name, "gpio_reset")

    async def power_cycle(self, name: str, reason: str) -> bool:
        return await self._act(name, "power_cycle")

    async def usb_reauth(self, name: str) -> bool:
        return await self._act(name, "usb_reauth")

    async def reset(self, name: str, reason: str) -> bool:
        return await self._act(name, "reset")

    def hold_local(self, name: str) -> bool:
        self.held_local.append(name)
        return False

    async def reroute(self, name: str, reason: str) -> bool:
        return await self._act(name, "reroute")

    def recovery_started(self, name: str, rung: str) -> None:
        pass

    def recovery_ended(self, name: str, rung: str, ok: bool) -> None:
        pass


@dataclass
class Bench:
    time: FakeTime
    heartbeat: FakeHeartbeat
    modems: FakeModems
    guardian: Guardian

    def steps(self) -> list[tuple[str, str, str]]:
        return [(r["modem"], r["step"], r["result"]) for r in reversed(self.guardian.status())]


def snap(name: str, role: str, caps: frozenset[str] = ALL_CAPS, at: bool = True) -> ModemSnapshot:
    return ModemSnapshot(name=name, role=role, model="generic", state="connected", at_port=at,
                         capabilities=caps)


def bench(modems: dict[str, ModemSnapshot], *, max_resets: int = 6) -> Bench:
    time = FakeTime()
    heartbeat = FakeHeartbeat(time, ok={name: True for name in modems})
    fake = FakeModems(dict(modems))
    settings = GuardianSettings(grace_s=GRACE, margin_s=MARGIN, max_resets_per_hour=max_resets,
                                heartbeat_timeout_s=TIMEOUT, step_costs=COSTS)
    guardian = Guardian(fake, heartbeat, settings, clock=time.clock, sleep=time.sleep)
    return Bench(time, heartbeat, fake, guardian)


def play(b: Bench, scenario: Callable[[Bench], Awaitable[None]]) -> None:
    async def main() -> None:
        task = asyncio.create_task(b.guardian.run())
        try:
            await b.time.advance(0.0)
            await scenario(b)
        finally:
            task.cancel()
            await b.guardian.stop()
            await asyncio.gather(task, return_exceptions=True)
    asyncio.run(main())


def started_at(b: Bench) -> dict[str, float]:
    """Each step's start on the guardian's clock, from its history."""
    return {f"{a.modem}:{a.rung}:{n}": a.started for n, a in enumerate(b.guardian.history)}


# --- scenarios ------------------------------------------------------------------------------------

def test_a_path_failure_climbs_the_ladder_rung_by_rung_as_the_grace_shrinks() -> None:
    b = bench({"modem2": snap("modem2", "iot")})

    async def scenario(b: Bench) -> None:
        b.heartbeat.ok["modem2"] = False  # the only path fails: every step is urgent
        b.guardian.poke()
        await b.time.advance(200.0)

    play(b, scenario)
    rungs = [rung for _m, rung, _r in b.steps()]
    assert rungs[:5] == ["radio_cycle", "soft_reset", "usb_reauth", "gpio_reset", "power_cycle"]
    records = list(reversed(b.guardian.status()))
    left = [r["grace_left_s"] for r in records[:5]]
    assert left == sorted(left, reverse=True) and len(set(left)) == 5  # the grace shrinks
    starts = [a.started for a in b.guardian.history[:5]]
    ends = [a.ended for a in b.guardian.history[:5]]
    assert starts[0] == SETTLE_S  # at the settle deadline, not a tick later
    # Each rung starts the moment the previous one is judged to have failed.
    assert starts[1:] == ends[:4]
    assert all(result == "failed" for _m, _r, result in b.steps()[:5])


def test_an_ack_stops_the_ladder() -> None:
    b = bench({"modem2": snap("modem2", "iot")})

    def a_reset_pulse_heals(name: str, what: str) -> None:
        if what == "gpio_reset":
            asyncio.get_running_loop().call_soon(b.heartbeat.ack, name)

    b.modems.on_action = a_reset_pulse_heals

    async def scenario(b: Bench) -> None:
        b.heartbeat.ok["modem2"] = False
        b.guardian.poke()
        await b.time.advance(1000.0)

    play(b, scenario)
    assert b.steps() == [("modem2", "radio_cycle", "failed"), ("modem2", "soft_reset", "failed"),
                         ("modem2", "usb_reauth", "failed"), ("modem2", "gpio_reset", "ok")]
    gpio = b.guardian.history[-1]
    assert gpio.ended is not None and gpio.ended - gpio.started <= 0.5  # the ack, at once
    assert not b.guardian.running


def test_no_step_while_the_budget_says_wait_and_the_wake_is_the_wait_until() -> None:
    # Only a reset line, at most one reset an hour: after one pulse the planner waits.
    b = bench({"modem2": snap("modem2", "iot", caps=frozenset({"reset_gpio"}), at=False)},
              max_resets=1)

    async def scenario(b: Bench) -> None:
        b.heartbeat.ok["modem2"] = False
        b.guardian.poke()
        await b.time.advance(SETTLE_S + 30.0)  # the pulse and its judging are over
        assert b.steps() == [("modem2", "gpio_reset", "failed")]
        first = b.guardian.history[0]
        await b.time.advance(first.started + 3600.0 - 1.0)
        assert len(b.guardian.history) == 1, "a second reset within the hour"
        assert b.guardian.next_wake is not None
        await b.time.advance(first.started + 3600.0 + 1.0)
        assert [a.rung for a in b.guardian.history] == ["gpio_reset", "gpio_reset"]
        assert b.guardian.history[1].started == first.started + 3600.0  # at Wait.until

    play(b, scenario)


def test_the_guardian_sleeps_until_its_next_deadline_not_a_tick() -> None:
    b = bench({"modem1": snap("modem1", "primary"), "modem2": snap("modem2", "iot")})

    async def scenario(b: Bench) -> None:
        await b.time.advance(5.0)
        b.time.asked.clear()
        b.heartbeat.ok["modem1"] = False  # not the carrier: a repair in the background
        b.guardian.poke()
        await b.time.advance(SETTLE_S + 5.0 + 0.001)
        naps = [(at, d) for at, d in b.time.asked if d > 1.0]
        # One sleep from the poke to the settle deadline: no one-second steps in between.
        assert naps and naps[0] == (5.0, SETTLE_S)
        assert b.guardian.history[0].started == 5.0 + SETTLE_S
        assert b.guardian.history[0].modem == "modem1"

    play(b, scenario)


def test_with_nothing_wrong_the_only_deadline_is_the_heartbeat_schedule() -> None:
    b = bench({"modem1": snap("modem1", "primary"), "modem2": snap("modem2", "iot")})

    async def scenario(b: Bench) -> None:
        for minute in range(1, 6):  # heartbeats acknowledged on schedule
            await b.time.advance(minute * INTERVAL)
            b.heartbeat.ack("modem2")
        naps = [d for _at, d in b.time.asked]
        assert len(naps) <= 2 * 5 + 1  # a look per heartbeat at most, not one a second
        assert b.guardian.history == []

    play(b, scenario)


def test_the_schedule_watch_says_it_once_and_asks_for_a_heartbeat() -> None:
    b = bench({"modem2": snap("modem2", "iot")})
    hb = b.heartbeat
    now = 0.0
    stuck = replace(hb.facts(), last_attempt_end=0.0)
    hb.facts = lambda: replace(stuck, schedule_fault=hb.fault)  # type: ignore[method-assign]
    assert b.guardian.watch_schedule(now + INTERVAL + TIMEOUT) is None
    fault = b.guardian.watch_schedule(now + INTERVAL + TIMEOUT + 5)
    assert fault is not None and "no heartbeat attempted for 75 s" in fault
    assert hb.fault == fault


def test_a_settings_reload_takes_effect_and_wakes_the_guardian() -> None:
    b = bench({"modem2": snap("modem2", "iot")})
    settings: Any = replace(b.guardian.settings, margin_s=60.0)
    b.guardian.configure(settings)
    assert b.guardian.settings.margin_s == 60.0
    assert b.guardian._wake.is_set()
