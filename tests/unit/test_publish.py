"""The status publisher on simulated time: it wakes when poked, every 20 s
otherwise, and just past the grace threshold's crossing when that comes first.

The publisher gets a snapshot function, a sleep that moves only when the
test says so, and real files in ``tmp_path``; each round is seen in the
status file it writes and in the sleeps it asks for.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from pathlib import Path
from typing import Any, cast

import pytest

from remsim_supervisor.adapters.notify import Event, Watcher
from remsim_supervisor.supervisor.publish import (
    CROSSING_MARGIN_S,
    REFRESH_S,
    Publisher,
    next_round,
)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


class FakeTime:
    """A sleep that returns only when the test advances past its end; sleeps recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.asked: list[tuple[float, float]] = []  # (when, how long)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, delay: float) -> None:
        self.asked.append((self.now, delay))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), future))
        await future

    async def advance(self, until: float) -> None:
        while True:
            await settle()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # given up on: a poke came first
            if not self._sleepers or self._sleepers[0][0] > until:
                break
            due, _n, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            future.set_result(None)
        self.now = max(self.now, until)
        await settle()


class Notes:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def notify(self, events: list[Event]) -> None:
        self.events += events

    def status(self) -> dict[str, Any]:
        return {"sent": len(self.events)}


def test_next_round_is_the_refresh_unless_the_grace_crosses_the_threshold_sooner() -> None:
    def status(remaining: Any) -> dict[str, Any]:
        return {"grace": {"remaining_s": remaining}}

    assert next_round(status(280.0), 120, 20.0) == 20.0  # a healthy router
    assert next_round(status(130.0), 120, 20.0) == pytest.approx(10.0 + CROSSING_MARGIN_S)
    assert next_round(status(120.0), 120, 20.0) == pytest.approx(CROSSING_MARGIN_S)
    assert next_round(status(100.0), 120, 20.0) == 20.0  # below already: notified once
    assert next_round(status(None), 120, 20.0) == 20.0
    assert next_round(status(True), 120, 20.0) == 20.0
    assert next_round({}, 120, 20.0) == 20.0


def test_a_quiet_daemon_publishes_every_20_s_and_at_once_when_poked(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeTime()
        rounds = itertools.count(1)
        status_file = tmp_path / "state" / "status.json"

        def snapshot() -> dict[str, Any]:
            return {"round": next(rounds), "grace": {"remaining_s": 290.0},
                    "heartbeat": {"path": "modem2"}}

        publisher = Publisher(snapshot, status_file=str(status_file),
                              metrics_file=str(tmp_path / "m.prom"), watcher=Watcher(120),
                              notifier=None, mask=lambda s: s, sleep=fake.sleep,
                              wall=lambda: 1000.0 + fake.now)
        task = asyncio.create_task(publisher.run())
        try:
            await fake.advance(0.0)
            assert json.loads(status_file.read_text())["round"] == 1
            await fake.advance(60.0)
            published = json.loads(status_file.read_text())
            # 0, 20, 40, 60 s: four rounds a minute, where there were twelve
            assert published["round"] == 4
            assert published["published_at"] == 1060.0
            assert [d for _t, d in fake.asked] == [REFRESH_S] * 4
            publisher.poke()
            await fake.advance(61.0)
            assert json.loads(status_file.read_text())["round"] == 5
            assert "remsim_supervisor_info" in (tmp_path / "m.prom").read_text()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_the_grace_low_notification_comes_at_the_crossing_not_at_the_next_round(
        tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeTime()
        notes = Notes()
        last_ack = 0.0  # no acknowledgement since: the grace runs down from 300 s

        def snapshot() -> dict[str, Any]:
            return {"grace": {"remaining_s": round(300.0 - (fake.now - last_ack), 1)}}

        publisher = Publisher(snapshot, status_file=str(tmp_path / "status.json"),
                              metrics_file=None, watcher=Watcher(120), notifier=cast(Any, notes),
                              mask=lambda s: s, sleep=fake.sleep)
        task = asyncio.create_task(publisher.run())
        try:
            await fake.advance(180.0)
            assert notes.events == []  # 120.0 s left is not below the threshold yet
            await fake.advance(180.0 + CROSSING_MARGIN_S)
            assert [e.name for e in notes.events] == ["grace_low"]
            assert notes.events[0].fields["grace_left"] == "120"
            # the rounds before: 20 s each (0 to 160 s), then one just past the crossing
            assert [d for _t, d in fake.asked][:9] == [REFRESH_S] * 9
            assert fake.asked[9] == (180.0, pytest.approx(CROSSING_MARGIN_S))
            await fake.advance(400.0)
            assert len(notes.events) == 1  # once, until the grace is back above
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
