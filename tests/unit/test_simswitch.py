"""The coalescing of osmo-remsim events, on simulated time.

Each scenario runs a real :class:`SimSwitcher` whose ``sleep`` and ``clock``
are a :class:`FakeTime`: events arrive at chosen instants, nothing waits on
the wall clock, and the SIM line, the resets and the pins are recorded by
fakes of the daemon's callbacks. The fixtures are the two sequences of
``remsim-events.json`` (REMSIM-EVENTS.md).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor.config import ModemConfig
from remsim_supervisor.core.simplan import (
    KNOWN_CAUSES,
    MAX_BATCH_SETTLES,
    Event,
    Memory,
    parse_hostport,
    plan,
)
from remsim_supervisor.supervisor.lines import hold_local
from remsim_supervisor.supervisor.simswitch import SimSwitcher
from tests.paths import SHARED

SPEC = SHARED / "spec" / "remsim-events.json"
FIXTURES: dict[str, Any] = json.loads(SPEC.read_text())
ENTER: list[dict[str, Any]] = FIXTURES["enter_operation"]
LEAVE: list[dict[str, Any]] = FIXTURES["leave_operation"]
SETTLE = 0.5
PULSE = 0.3


class FakeTime:
    """A clock and a sleep that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), future))
        await future

    async def advance(self, delta: float) -> None:
        target = self.now + delta
        await _let_run()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)
            await _let_run()
        self.now = target
        await _let_run()


async def _let_run() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@dataclass
class Modem:
    """The daemon's side, faked: a SIM line, a reset that takes PULSE, pins."""

    time: FakeTime
    remote: bool | None = False
    switches: list[tuple[float, bool]] = field(default_factory=list)
    resets: list[tuple[float, bool | None, str]] = field(default_factory=list)
    pins: list[tuple[float, str, str]] = field(default_factory=list)
    broken: bool = False  # the line and the reset fail
    hang: asyncio.Event | None = None  # a reset waits for this

    async def set_sim(self, remote: bool) -> None:
        if self.broken:
            raise OSError("line gone")
        self.switches.append((self.time.now, remote))
        self.remote = remote

    def get_sim(self) -> bool | None:
        return self.remote

    async def reset_modem(self, reason: str) -> bool:
        if self.broken:
            raise RuntimeError("port gone")
        if self.hang is not None:
            await self.hang.wait()
        self.resets.append((self.time.now, self.remote, reason))
        await self.time.sleep(PULSE)
        return True

    async def pin(self, kind: str, hostport: str) -> None:
        self.pins.append((self.time.now, kind, hostport))


Scenario = Callable[["Harness"], Awaitable[None]]


class Harness:
    def __init__(self, remote: bool | None = False, settle: float = SETTLE) -> None:
        self.time = FakeTime()
        self.modem = Modem(self.time, remote)
        self.switcher = SimSwitcher(
            set_sim=self.modem.set_sim, get_sim=self.modem.get_sim,
            reset_modem=self.modem.reset_modem, pin=self.modem.pin,
            settle_s=settle, sleep=self.time.sleep, clock=self.time.clock)
        self.ticks = 1000
        self.pid = 100

    async def burst(self, events: Sequence[dict[str, Any]], arrivals: Sequence[float] | None = None,
                    *, origins: bool = True, order: Sequence[int] | None = None) -> None:
        """Start ``events`` back to back (in this order, as the client does) and let
        them arrive after ``arrivals`` seconds each, in ``order`` (indexes)."""
        spawned = self.time.now
        self.ticks += 100
        tags = []
        for _ in events:
            self.pid += 1
            tags.append((self.ticks, self.pid))
        arrivals = arrivals if arrivals is not None else [0.01 * i for i in range(len(events))]
        sequence = list(order) if order is not None else sorted(range(len(events)),
                                                               key=lambda i: arrivals[i])
        for i in sequence:
            wait = spawned + arrivals[i] - self.time.now
            if wait > 0:
                await self.time.advance(wait)
            origin = None
            if origins:
                origin = {"ticks": tags[i][0], "pid": tags[i][1],
                          "age_s": self.time.now - spawned}
            answer = await self.switcher.submit(events[i]["cause"], events[i]["env"], origin)
            assert answer["ok"], answer

    async def settle(self) -> None:
        await self.time.advance(2 * SETTLE * MAX_BATCH_SETTLES + PULSE)

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            task = asyncio.create_task(self.switcher.run())
            try:
                await scenario(self)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        asyncio.run(main())


def shuffled_arrivals(rng: random.Random, n: int, spread: float) -> list[float]:
    return [rng.uniform(0.0, spread) for _ in range(n)]


# --- the sequences in every order -----------------------------------------------------------------

def check_transition(modem: Modem, n: int, remote: bool) -> None:
    """After the n-th transition: the line on ``remote``, n resets, each after its switch."""
    assert modem.remote is remote
    assert len(modem.resets) == n, modem.resets
    assert modem.resets[-1][1] is remote  # the reset saw the new SIM selected
    assert len(modem.switches) == n
    assert modem.switches[-1][0] <= modem.resets[-1][0]


@pytest.mark.parametrize("origins", [True, False], ids=["with-origin", "arrival-order"])
def test_every_order_of_enter_then_leave_gives_one_switch_and_one_reset_each(
        origins: bool) -> None:
    leave_orders = list(itertools.permutations(range(len(LEAVE))))
    rng = random.Random(7)
    for n, enter_order in enumerate(itertools.permutations(range(len(ENTER)))):
        harness = Harness(remote=False)

        async def scenario(h: Harness, enter_order: Sequence[int] = enter_order,
                           leave_order: Sequence[int] = leave_orders[n % len(leave_orders)],
                           ) -> None:
            # Arrival gaps stay inside the settle window, in the given order.
            gaps = sorted(rng.uniform(0.0, 0.9 * SETTLE) for _ in ENTER)
            arrivals = [0.0] * len(ENTER)
            for rank, i in enumerate(enter_order):
                arrivals[i] = gaps[rank]
            await h.burst(ENTER, arrivals, origins=origins, order=enter_order)
            await h.settle()
            check_transition(h.modem, 1, True)
            await h.time.advance(30.0)  # far apart: a second transition
            await h.burst(LEAVE, [0.05 * rank for rank in range(len(LEAVE))], origins=origins,
                          order=leave_order)
            await h.settle()
            check_transition(h.modem, 2, False)
            kinds = [(kind, hostport) for _, kind, hostport in h.modem.pins]
            assert sorted(kinds) == [("bankd", "203.0.113.30:9999"),
                                     ("server", "203.0.113.20:9998")]

        harness.run(scenario)


def test_a_reset_request_alone_gives_exactly_one_reset_and_no_switch() -> None:
    async def scenario(h: Harness) -> None:
        await h.burst([{"cause": "request-modem-reset", "env": {}}])
        await h.settle()
        assert len(h.modem.resets) == 1 and h.modem.switches == []
        assert h.modem.remote is False
        # The same side again with its reset: still exactly one reset, no switch.
        await h.time.advance(20)
        await h.burst([e for e in LEAVE])
        await h.settle()
        assert len(h.modem.resets) == 2 and h.modem.switches == []

    Harness(remote=False).run(scenario)


def test_a_switch_without_a_reset_request_still_resets_once() -> None:
    async def scenario(h: Harness) -> None:
        await h.burst([ENTER[2]])  # request-sim-remote alone: the modem must see the new SIM
        await h.settle()
        check_transition(h.modem, 1, True)

    Harness(remote=False).run(scenario)


def test_a_late_reset_request_is_satisfied_by_the_reset_already_done() -> None:
    async def scenario(h: Harness) -> None:
        # request-modem-reset's process is slow: it arrives after the batch was applied.
        await h.burst(ENTER[2:5], arrivals=[0.0, 0.05, SETTLE + PULSE + 0.4])
        await h.settle()
        check_transition(h.modem, 1, True)

    Harness(remote=False).run(scenario)


def test_without_origin_a_late_reset_is_a_new_request() -> None:
    # What the rule can know: with no origin, a reset after the batch is a new one.
    async def scenario(h: Harness) -> None:
        await h.burst(ENTER[2:5], arrivals=[0.0, 0.05, SETTLE + PULSE + 0.4], origins=False)
        await h.settle()
        assert len(h.modem.resets) == 2 and len(h.modem.switches) == 1

    Harness(remote=False).run(scenario)


def test_a_lone_reset_waits_for_the_sim_request_of_its_transition() -> None:
    async def scenario(h: Harness) -> None:
        # The reset arrives first; the SIM request only 1.5 settle windows later.
        await h.burst(ENTER[2:5], arrivals=[1.5 * SETTLE, 1.5 * SETTLE, 0.0])
        await h.settle()
        check_transition(h.modem, 1, True)

    Harness(remote=False).run(scenario)


@pytest.mark.parametrize("start", [False, True], ids=["from-local", "from-remote"])
def test_leave_and_enter_in_one_burst_end_where_the_client_ended(start: bool) -> None:
    # A reconfiguration: leave then enter again, all within one settle window,
    # arriving in reverse. The client's order (origins) decides: remote.
    events = LEAVE + ENTER[2:]
    for seed in range(30):
        rng = random.Random(seed)
        order = list(range(len(events)))
        rng.shuffle(order)

        async def scenario(h: Harness, order: list[int] = order) -> None:
            await h.burst(events, [0.02 * order.index(i) for i in range(len(events))], order=order)
            await h.settle()
            assert h.modem.remote is True
            assert len(h.modem.resets) == 1
            assert len(h.modem.switches) == (0 if start else 1)

        Harness(remote=start).run(scenario)


def test_a_stale_sim_request_does_not_undo_a_newer_one() -> None:
    async def scenario(h: Harness) -> None:
        # Leave (older) and enter (newer) in quick succession; the leave's
        # sim-local is so slow it arrives after the enter was applied.
        events = LEAVE + ENTER[2:5]
        slow = [0.0, SETTLE + PULSE + 0.5, 0.0, 0.05, 0.05, 0.05]
        assert events[1]["cause"] == "request-sim-local"
        await h.burst(events, slow)
        await h.settle()
        assert h.modem.remote is True
        assert len(h.modem.resets) == 1

    Harness(remote=True).run(scenario)


def test_two_transitions_far_apart_are_two_transitions() -> None:
    async def scenario(h: Harness) -> None:
        for n in range(1, 5):
            remote = n % 2 == 1
            await h.burst(ENTER if remote else LEAVE)
            await h.settle()
            check_transition(h.modem, n, remote)
            await h.time.advance(60)

    Harness(remote=False).run(scenario)


def test_an_endless_stream_is_applied_after_the_longest_batch() -> None:
    async def scenario(h: Harness) -> None:
        start = h.time.now
        await h.switcher.submit("request-sim-remote", {})
        while not h.modem.resets and h.time.now - start < 2 * MAX_BATCH_SETTLES * SETTLE:
            await h.time.advance(0.4 * SETTLE)
            await h.switcher.submit("event-bankd-connect", {})
        assert h.modem.resets, "never applied"
        assert h.modem.resets[0][0] - start <= MAX_BATCH_SETTLES * SETTLE + 0.4 * SETTLE
        assert h.modem.remote is True

    Harness(remote=False).run(scenario)


def test_an_unknown_selection_is_set_and_reset_once() -> None:
    async def scenario(h: Harness) -> None:
        await h.burst(ENTER)
        await h.settle()
        assert h.modem.switches == [(pytest.approx(h.modem.switches[0][0]), True)]
        assert len(h.modem.resets) == 1

    Harness(remote=None).run(scenario)


def test_failures_of_the_callbacks_do_not_end_the_consumer() -> None:
    async def scenario(h: Harness) -> None:
        h.modem.broken = True
        await h.burst(ENTER)
        await h.settle()
        last = h.switcher.status()["transitions"][-1]
        assert last["switched"] is False and last["reset"] is True and last["reset_ok"] is False
        h.modem.broken = False
        await h.time.advance(20)
        await h.burst(ENTER[2:5])
        await h.settle()
        check_transition(h.modem, 1, True)

    Harness(remote=False).run(scenario)


# --- submit and status ----------------------------------------------------------------------------

def test_submit_returns_at_once_even_while_a_reset_hangs() -> None:
    async def scenario(h: Harness) -> None:
        hang = h.modem.hang = asyncio.Event()
        await h.burst(ENTER)
        await h.time.advance(5 * SETTLE)
        assert h.modem.remote is True and h.modem.resets == []  # the reset hangs
        before = h.time.now
        for cause in sorted(KNOWN_CAUSES):
            answer = await asyncio.wait_for(h.switcher.submit(cause, {}), timeout=1.0)
            assert answer["ok"] is True and answer["cause"] == cause
        assert h.time.now == before
        hang.set()

    Harness(remote=False).run(scenario)


def test_an_unknown_cause_is_refused_and_changes_nothing() -> None:
    async def scenario(h: Harness) -> None:
        answer = await h.switcher.submit("request-sim-$(reboot)", {})
        assert answer["ok"] is False and "unknown cause" in answer["error"]
        await h.settle()
        assert h.modem.switches == [] and h.modem.resets == [] and h.modem.pins == []
        assert h.switcher.status()["events"] == 0

    Harness().run(scenario)


def test_status_shows_the_selection_pins_and_transitions() -> None:
    async def scenario(h: Harness) -> None:
        assert h.switcher.status()["sim"] == "local"
        await h.burst(ENTER)
        assert h.switcher.status()["busy"] is True
        await h.settle()
        status = h.switcher.status()
        assert status["sim"] == "remote" and status["busy"] is False
        assert status["pinned"] == {"bankd": "203.0.113.30:9999", "server": "203.0.113.20:9998"}
        (transition,) = status["transitions"]
        assert transition["side"] == "remote" and transition["switched"] and transition["reset"]
        assert sorted(transition["causes"]) == sorted(e["cause"] for e in ENTER)
        assert transition["age_s"] >= 0

    Harness(remote=False).run(scenario)


# --- pins -----------------------------------------------------------------------------------------

BANKD = {"cause": "event-config-bankd", "env": {}}


def pin_of(value: str, server: str | None = None) -> list[tuple[str, str]]:
    env = {"REMSIM_BANKD_ADDR": value}
    if server is not None:
        env["REMSIM_SERVER_ADDR"] = server
    result: list[tuple[str, str]] = []

    async def scenario(h: Harness) -> None:
        answer = await h.switcher.submit("event-config-bankd", env)
        assert answer["ok"] is True
        await h.time.advance(0.001)  # pins do not wait for the settle window
        result.extend((kind, hostport) for _, kind, hostport in h.modem.pins)
        await h.settle()
        assert h.modem.resets == []

    Harness().run(scenario)
    return result


@pytest.mark.parametrize(("value", "expected"), [
    ("203.0.113.30:9999", [("bankd", "203.0.113.30:9999")]),
    ("203.0.113.30", [("bankd", "203.0.113.30:9999")]),
    ("bankd.Example.com:10000", [("bankd", "bankd.example.com:10000")]),
    ("[2001:db8::30]:9999", [("bankd", "[2001:db8::30]:9999")]),
    ("[::1]:9999", [("bankd", "[::1]:9999")]),
    ("", []),
    ("(null)", []),
    ("(null):0", []),
    ("203.0.113.30:0", []),
    ("0.0.0.0:9999", []),
])
def test_bankd_is_pinned_at_once_from_its_address(value: str,
                                                   expected: list[tuple[str, str]]) -> None:
    assert pin_of(value) == expected


@pytest.mark.parametrize("value", [
    "$(touch /tmp/pwned)", "`touch /tmp/pwned`", "203.0.113.30:9999;reboot",
    "203.0.113.30:9999 && reboot", "203.0.113.30:99999", "999.0.113.30:9999",
    "[2001:db8::30%$(reboot)]:9999", "bankd\n.example.com", "-oProxyCommand=x:1",
])
def test_hostile_bankd_addresses_are_rejected(value: str) -> None:
    assert pin_of(value) == []
    with pytest.raises(ValueError, match="not an address"):
        parse_hostport(value, 9999)


def test_server_is_pinned_on_connect_once() -> None:
    async def scenario(h: Harness) -> None:
        env = {"REMSIM_SERVER_ADDR": "203.0.113.20:9998"}
        await h.switcher.submit("event-server-connect", env)
        await h.switcher.submit("event-config-bankd", {**env, "REMSIM_BANKD_ADDR": "[::1]:9999"})
        await h.time.advance(0.001)
        assert [(k, v) for _, k, v in h.modem.pins] == [
            ("server", "203.0.113.20:9998"), ("bankd", "[::1]:9999")]

    Harness().run(scenario)


def test_an_older_bankd_assignment_arriving_late_does_not_replace_the_newer() -> None:
    async def scenario(h: Harness) -> None:
        old = {"cause": "event-config-bankd", "env": {"REMSIM_BANKD_ADDR": "203.0.113.30:9999"}}
        new = {"cause": "event-config-bankd", "env": {"REMSIM_BANKD_ADDR": "203.0.113.31:9999"}}
        await h.burst([old, new], order=[1, 0])
        await h.time.advance(0.001)
        assert [v for _, k, v in h.modem.pins] == ["203.0.113.31:9999"]

    Harness().run(scenario)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_hostport_takes_any_text_as_data(value: str) -> None:
    try:
        parsed = parse_hostport(value, 9999)
    except ValueError as exc:
        assert str(exc).startswith("not an address")
        return
    if parsed is not None:
        host, port = parsed
        assert 0 < port <= 65535
        assert not set(host) & set(" \t\n;&|`$()<>'\"\\*?![]{}")


# --- the pure rule --------------------------------------------------------------------------------

def test_plan_ignores_a_reset_request_older_than_the_last_reset() -> None:
    memory = Memory(last_reset_at=10.0, applied_order=(5, 50))
    late = Event("request-modem-reset", at=11.0, order=(5, 52), started=9.9)
    new = Event("request-modem-reset", at=12.0, order=(9, 60), started=11.5)
    assert plan([late], True, memory).idle
    assert plan([new], True, memory).reset and not plan([new], True, memory).switch


# --- the IoT modem --------------------------------------------------------------------------------

@dataclass
class FakeLine:
    level: bool

    def get(self) -> bool:
        return self.level

    def set(self, active: bool) -> None:
        self.level = active


@pytest.mark.parametrize(("remote_value", "active_low"), [(1, False), (0, False), (1, True)])
def test_hold_local_puts_the_iot_modem_back_on_its_sim(remote_value: int,
                                                        active_low: bool) -> None:
    cfg = ModemConfig(name="modem2", role="iot", usb_path="1-2", sim_remote_value=remote_value,
                      sim_active_low=active_low)
    local = remote_value != 1  # the logical level of the local SIM
    line = FakeLine(level=not local)
    assert hold_local(cfg, line) is True  # type: ignore[arg-type]
    assert line.level is local
    assert hold_local(cfg, line) is False  # type: ignore[arg-type]
    assert line.level is local
