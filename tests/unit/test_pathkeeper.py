"""The path keeper on simulated time: no namespaces, no sockets, no threads.

The routing executor is a stand-in behind the Router's interface that
records what it was asked; blocking calls run inline. Shown: a link-down
event moves the path to the primary at once, from the event's own state
(no read of the link); the link coming back does not move it back before
the failback hysteresis says so; the conntrack cut-over runs after the
route is in and never delays it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remsim_supervisor.adapters.resolve import Resolver
from remsim_supervisor.adapters.routing import PathSpec
from remsim_supervisor.config import (
    Config,
    EscalationConfig,
    IonmeshConfig,
    ModemConfig,
    RoutingConfig,
    SupervisorConfig,
)
from remsim_supervisor.supervisor.pathkeeper import PathKeeper
from remsim_supervisor.supervisor.usage import ModemView


@dataclass
class Link:
    up: bool = True
    ipv4: tuple[str, ...] = ("10.0.0.2",)


@dataclass
class Router:
    """The routing executor as the keeper uses it; every call recorded in order."""

    links: dict[str, Link] = field(default_factory=lambda: {"wwan0": Link(), "wwan1": Link()})
    calls: list[str] = field(default_factory=list)
    tables: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    def link_state(self, device: str) -> Link:
        self.calls.append(f"link_state {device}")
        return self.links[device]

    def path_of(self, name: str, device: str) -> PathSpec:
        self.calls.append(f"path_of {device}")
        return PathSpec(name, device, "10.0.0.1")

    def reconcile(self, pins: Any, path: PathSpec | None, standby: Any) -> None:
        self.calls.append("reconcile")
        self.tables.append((path.device if path else None, tuple(s.device for s in standby)))

    def owned(self) -> tuple[list[str], list[str]]:
        return [], []

    def reads(self) -> list[str]:
        return [c for c in self.calls if not c.startswith("reconcile")]


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def make_config() -> Config:
    return Config(
        path="/dev/null",
        supervisor=SupervisorConfig(),
        escalation=EscalationConfig(),
        ionmesh=IonmeshConfig(url="http://10.9.9.9:5000", client_id="r"),
        modems=(ModemConfig("modem1", "primary", device="wwan0"),
                ModemConfig("modem2", "iot", device="wwan1")),
        routing=RoutingConfig(pins=("10.8.8.8",)),
    )


VIEWS = [ModemView("modem1", "primary", "wwan0", None, {}),
         ModemView("modem2", "iot", "wwan1", None, {})]


def make_keeper(tmp_path: Path, router: Router, **kw: Any) -> PathKeeper:
    clock = lambda: 1000.0  # noqa: E731
    resolver = Resolver(cache_file=str(tmp_path / "resolved.json"), clock=clock)
    return PathKeeper(make_config(), lambda: VIEWS, router=router, resolver=resolver,
                      clock=clock, wall=lambda: 1.7e9, offload=kw.pop("offload", inline), **kw)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_link_down_moves_to_the_primary_at_once_without_reading_the_link(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        keeper = make_keeper(tmp_path, router)
        routed: list[str | None] = []
        keeper.on_routed = lambda move: routed.append(move.new)
        await keeper.refresh()
        assert keeper.path.active == "modem2"  # the IoT modem is preferred
        assert router.tables[-1] == ("wwan1", ("wwan0",))
        reads = len(router.reads())
        move = keeper.link_event("wwan1", False)
        # Decided in the event's own call, before anything awaits:
        assert move is not None and (move.old, move.new) == ("modem2", "modem1")
        assert keeper.path.active == "modem1" and "wwan1 down" in keeper.path.reason
        assert [m.as_dict()["to"] for m in keeper.moves] == ["modem2", "modem1"]
        await settle()
        assert router.tables[-1] == ("wwan0", ())  # the route is in: the primary, no standby
        assert routed == ["modem2", "modem1"]  # the first choice, then the move
        assert len(router.reads()) == reads, "the event's walk read nothing from the kernel"
        assert not keeper.stale  # a link going down needs no read

    asyncio.run(go())


def test_a_link_of_no_modem_changes_nothing(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        keeper = make_keeper(tmp_path, router)
        await keeper.refresh()
        calls = len(router.calls)
        assert keeper.link_event("br-lan", False) is None
        await settle()
        assert len(router.calls) == calls and keeper.path.active == "modem2"

    asyncio.run(go())


def test_the_link_back_moves_the_path_back_only_after_the_hysteresis(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        keeper = make_keeper(tmp_path, router)
        await keeper.refresh()
        router.links["wwan1"] = Link(up=False)
        keeper.link_event("wwan1", False)
        await settle()
        assert keeper.path.active == "modem1"
        router.links["wwan1"] = Link(up=True)
        assert keeper.link_event("wwan1", True) is None  # up is not yet healthy
        assert keeper.path.active == "modem1" and keeper.stale  # its address wants a read
        await keeper.refresh()
        assert keeper.failback_candidate() == "modem2"
        assert router.tables[-1] == ("wwan0", ("wwan1",))  # a standby route for bound sockets
        for n in (1, 2):
            await keeper.heartbeat_acked("modem2")
            assert keeper.path.active == "modem1" and f"{n}/3" in keeper.path.reason
        keeper.failback_failed("modem2")  # one failure starts the count again
        for _ in range(2):
            await keeper.heartbeat_acked("modem2")
        assert keeper.path.active == "modem1"
        await keeper.heartbeat_acked("modem2")
        assert keeper.path.active == "modem2" and "3 heartbeats acknowledged" in keeper.path.reason
        assert router.tables[-1] == ("wwan1", ("wwan0",))

    asyncio.run(go())


def test_an_event_during_a_read_wins_over_the_read(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        gate = asyncio.Event()

        async def slow(fn: Callable[..., Any], *args: Any) -> Any:
            result = fn(*args)  # read now: the link is still up
            if fn.__name__ == "_read_device":
                await gate.wait()
            return result

        keeper = make_keeper(tmp_path, router, offload=slow)
        first = asyncio.ensure_future(keeper.refresh())
        await settle()
        gate.set()
        await first
        assert keeper.path.active == "modem2"
        gate.clear()
        reading = asyncio.ensure_future(keeper.refresh())
        await settle()
        keeper.link_event("wwan1", False)  # while the read (from before it) is under way
        gate.set()
        await reading
        await settle()
        assert keeper.facts["modem2"].up is False and keeper.path.active == "modem1"

    asyncio.run(go())


def test_the_cut_over_runs_after_the_route_and_never_delays_it(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        order: list[str] = []
        gate = asyncio.Event()

        def flush(addresses: list[str]) -> int:
            order.append(f"flush {','.join(addresses)}")
            return len(addresses)

        async def offload(fn: Callable[..., Any], *args: Any) -> Any:
            if fn is flush:
                await gate.wait()  # a slow conntrack dump
            return fn(*args)

        keeper = make_keeper(tmp_path, router, offload=offload, flush=flush)
        keeper.on_routed = lambda move: order.append(f"routed {move.new}")
        await keeper.refresh()
        gate.set()
        await keeper.settled()
        order.clear()
        gate.clear()
        keeper.link_event("wwan1", False)
        await settle()
        assert order == ["routed modem1"], "the route and the session come first"
        assert router.tables[-1][0] == "wwan0"
        settled = asyncio.ensure_future(keeper.settled())
        await settle()
        assert not settled.done()  # the session's next connection waits for the cut-over
        gate.set()
        await settled
        assert order == ["routed modem1", "flush 10.8.8.8,10.9.9.9"]

    asyncio.run(go())


def test_a_reroute_moves_only_to_a_usable_path(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router(links={"wwan0": Link(up=False), "wwan1": Link()})
        keeper = make_keeper(tmp_path, router, flush=lambda a: 0)
        await keeper.refresh()
        assert not await keeper.reroute("modem1", "recovery")
        assert await keeper.reroute("modem2", "recovery")  # already there
        router.links["wwan0"] = Link()
        await keeper.refresh()
        assert await keeper.reroute("modem1", "recovery step")
        assert keeper.path.active == "modem1" and keeper.moves[-1].reason == "recovery step"
        assert keeper.moves[-1].old == "modem2"
        await keeper.settled()

    asyncio.run(go())
