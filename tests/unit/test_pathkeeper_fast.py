"""A move's route written first, on simulated time: no namespaces, no sockets.

The routing executor is the stand-in of ``test_pathkeeper`` plus the routes
a path gets as the active one; the fast writer is a stand-in behind
:class:`~remsim_supervisor.adapters.fastroute.FastRoute`'s interface that
records what it was asked to write (the messages themselves are checked
against the kernel in ``tests/adapters/test_fastroute.py``). Shown: the
write is the first thing a link event does, before the move is logged; the
session hears at once; the reconcile and the cut-over wait for the
heartbeat the move asked for (bounded); a failed write is logged and the
reconcile still routes; a failback writes first too and does not hold the
session up.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remsim_supervisor.adapters.fastroute import Prepared
from remsim_supervisor.adapters.routing import PathSpec
from remsim_supervisor.core.routes import Route, default_route
from remsim_supervisor.supervisor import pathkeeper
from tests.unit.test_pathkeeper import Link, make_keeper, settle
from tests.unit.test_pathkeeper import Router as BaseRouter

INDEX = {"wwan0": 2, "wwan1": 3}


@dataclass
class Router(BaseRouter):
    order: list[str] = field(default_factory=list)

    def routes_of(self, path: PathSpec) -> list[Route]:
        return [default_route(socket.AF_INET, 240, path.gateway, INDEX[path.device],
                              path.device)]

    def reconcile(self, pins: Any, path: PathSpec | None, standby: Any,
                  current: Callable[[], bool] | None = None) -> None:
        if current is not None and not current():
            self.order.append(f"stale {path.device if path else None}")  # changes nothing
            return
        super().reconcile(pins, path, standby)
        self.order.append(f"reconcile {path.device if path else None}")

    def clear(self) -> None:
        self.order.append("clear")


@dataclass
class Fast:
    order: list[str]
    problem: str | None = None
    written: list[Prepared] = field(default_factory=list)

    def write(self, prepared: Prepared) -> str | None:
        self.written.append(prepared)
        self.order.append(f"write {prepared.name}")
        return self.problem

    def close(self) -> None:
        self.order.append("close")


def keeper_with(tmp_path: Path, problem: str | None = None,
                **kw: Any) -> tuple[pathkeeper.PathKeeper, Router, Fast]:
    router = Router()
    keeper = make_keeper(tmp_path, router, **kw)
    fast = Fast(router.order, problem)
    keeper.fast = fast
    keeper.on_decided = lambda move: router.order.append(f"decided {move.new}")
    keeper.on_routed = lambda move: router.order.append(f"routed {move.new}")
    return keeper, router, fast


def test_the_route_is_the_first_thing_a_link_down_does(tmp_path: Path) -> None:
    async def go() -> None:
        def flush(addresses: list[str]) -> int:
            router.order.append("flush")
            return len(addresses)

        keeper, router, fast = keeper_with(tmp_path, flush=flush)
        await keeper.refresh()
        await keeper.settled()
        assert keeper.path.active == "modem2"
        # Every usable path is ready, the active one too (a move back may come first).
        assert sorted(keeper.prepared) == ["modem1", "modem2"]
        assert keeper.prepared["modem1"].text() == "route default via 10.0.0.1 dev wwan0 table 240"
        router.order.clear()
        keeper.link_event("wwan1", False)
        # In the event's own call, before anything awaits: the write, the log, the session.
        assert router.order == ["write modem1", "decided modem1", "routed modem1"]
        assert fast.written[-1].routes == tuple(router.routes_of(PathSpec("m", "wwan0",
                                                                          "10.0.0.1")))
        await settle()
        assert router.order[3:] == [], "the reconcile waits for the heartbeat the move asked for"
        keeper.heartbeat_over()
        await settle()
        assert router.order[3:] == ["reconcile wwan0", "flush"]
        assert router.tables[-1] == ("wwan0", ())
        assert sorted(keeper.prepared) == ["modem1"]  # the IoT path is down: nothing for it
        await keeper.stop()
        assert router.order[-2:] == ["close", "clear"]

    asyncio.run(go())


def test_the_reconcile_waits_for_the_heartbeat_only_so_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pathkeeper, "HEARTBEAT_FIRST_S", 0.05)

    async def go() -> None:
        keeper, router, _fast = keeper_with(tmp_path, flush=lambda a: 0)
        await keeper.refresh()
        router.order.clear()
        keeper.link_event("wwan1", False)
        await settle()
        assert "reconcile wwan0" not in router.order
        await asyncio.sleep(0.2)  # no heartbeat ended: the bound runs out
        assert router.order[-1] == "reconcile wwan0"

    asyncio.run(go())


def test_a_failed_write_is_logged_and_the_reconcile_routes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> None:
        keeper, router, _fast = keeper_with(tmp_path, "route default via 10.0.0.1 dev wwan0 "
                                            "table 240: No such device", flush=lambda a: 0)
        await keeper.refresh()
        router.order.clear()
        with caplog.at_level(logging.WARNING):
            keeper.link_event("wwan1", False)
            assert router.order == ["write modem1", "decided modem1"]  # nobody told yet
            await settle()
        # No waiting for a heartbeat: the reconcile is the route, and then the session hears.
        assert router.order == ["write modem1", "decided modem1", "reconcile wwan0",
                                "routed modem1"]
        assert ("could not route via modem1 at once (route default via 10.0.0.1 dev wwan0 "
                "table 240: No such device); the reconcile follows") in caplog.text

    asyncio.run(go())


def test_a_failback_writes_first_and_does_not_hold_the_session(tmp_path: Path) -> None:
    async def go() -> None:
        gate = asyncio.Event()

        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            if getattr(fn, "__name__", "") == "_route" and keeper.path.active == "modem2" \
                    and keeper.moves[-1].old == "modem1":
                await gate.wait()  # a slow reconcile (many pins)
            return fn(*args)

        keeper, router, _fast = keeper_with(tmp_path, offload=offload, flush=lambda a: 0)
        await keeper.refresh()
        keeper.link_event("wwan1", False)
        keeper.heartbeat_over()
        await settle()
        router.links["wwan1"] = Link(up=True)
        keeper.link_event("wwan1", True)
        await keeper.refresh()
        router.order.clear()
        for _ in range(3):
            # Returns although the reconcile waits (awaiting it would time out here).
            await asyncio.wait_for(keeper.heartbeat_acked("modem2"), 1.0)
        assert keeper.path.active == "modem2"
        assert router.order == ["write modem2", "decided modem2", "routed modem2"]
        gate.set()
        await settle()
        assert router.order[-1] == "reconcile wwan1"
        assert router.tables[-1] == ("wwan1", ("wwan0",))

    asyncio.run(go())


def test_a_move_during_a_repairing_reconcile_does_not_wait_for_it(tmp_path: Path) -> None:
    async def go() -> None:
        gate = asyncio.Event()
        slow = False

        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            if slow and getattr(fn, "__name__", "") == "_route":
                await gate.wait()  # the repair of a large table (many pins) under way
            return fn(*args)

        keeper, router, _fast = keeper_with(tmp_path, offload=offload, flush=lambda a: 0)
        await keeper.refresh()
        await keeper.settled()
        slow = True
        router.order.clear()
        refresh = asyncio.ensure_future(keeper.refresh())  # the heartbeat's read, nothing moves
        await settle()
        await settle()
        assert router.calls[-1] == "path_of wwan1", "the reads are done, the repair under way"
        assert not refresh.done(), "the session waits for the repair while nothing moved"
        keeper.link_event("wwan1", False)
        await settle()
        assert refresh.done(), "the move's heartbeat need not wait for the repair"
        assert router.order == ["write modem1", "decided modem1", "routed modem1"]
        keeper.heartbeat_over()
        gate.set()
        await settle()
        # The repair decided before the move changes nothing once the move's route is in.
        assert router.order[3:] == ["stale wwan1", "reconcile wwan0"]
        assert router.tables[-1] == ("wwan0", ())

    asyncio.run(go())


def test_a_move_during_the_read_does_not_wait_for_the_read(tmp_path: Path) -> None:
    async def go() -> None:
        gate = asyncio.Event()
        slow = False

        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            if slow and getattr(fn, "__name__", "") == "_read_device":
                await gate.wait()  # the router busy with a large reconcile
            return fn(*args)

        keeper, router, _fast = keeper_with(tmp_path, offload=offload, flush=lambda a: 0)
        await keeper.refresh()
        slow = True
        refresh = asyncio.ensure_future(keeper.refresh())
        await settle()
        assert not refresh.done()
        keeper.link_event("wwan1", False)
        await settle()
        assert refresh.done(), "the move's heartbeat need not wait for the read"
        assert keeper.path.active == "modem1" and keeper.facts["modem2"].up is False
        gate.set()
        keeper.heartbeat_over()
        await settle()
        assert router.tables[-1] == ("wwan0", ())

    asyncio.run(go())
