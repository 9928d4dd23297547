"""The heartbeat's path: which modem carries IonMesh, remsim-server, bankd and the pins.

The decisions are the pure rules of :mod:`remsim_supervisor.core.paths`;
the :class:`PathKeeper` feeds them facts and has the kernel carry out what
they decide, through the routing executor
(:class:`~remsim_supervisor.adapters.routing.Router`):

* facts: each modem's data device (link, carrier, address) and the path
  through it, read from the kernel (:meth:`PathKeeper.refresh`) at the start, on
  address events, after a move or an unacked beat, else every ``REREAD_S``;
  a netlink link event changes them from the
  event's own state (:meth:`PathKeeper.link_event`), without reading again;
* a move: decided at once; its first act is the new path's default routes,
  written from the deciding call itself (no thread, no await) with the
  messages prepared at the last read
  (:class:`~remsim_supervisor.adapters.fastroute.FastRoute`); then it is
  logged, and the session hears (``on_routed``) and sends its heartbeat;
  after that heartbeat (bounded) the table follows in full (the other usable
  path as a standby route for bound sockets) in one worker-thread call, and
  the conntrack cut-over of the pinned destinations runs after it
  (:meth:`PathKeeper.settled` waits for it). Should the write fail, the
  reconcile routes and the session hears after it;
* the pins: IonMesh's host, remsim-server and bankd as osmo-remsim names
  them, and ``routing.pins``, resolved on their own schedule
  (:class:`~remsim_supervisor.adapters.resolve.Resolver`).

Blocking work runs in daemon threads, each bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from remsim_supervisor.adapters.fastroute import FastRoute, Prepared
from remsim_supervisor.adapters.resolve import Resolver, is_address
from remsim_supervisor.adapters.serialport import in_daemon_thread
from remsim_supervisor.config import Config
from remsim_supervisor.core import paths as pathsel
from remsim_supervisor.supervisor.usage import ModemView

log = logging.getLogger("remsim_supervisor.supervisor.heartbeat")

CUTOVER_TIMEOUT_S = 3.0  # the conntrack cut-over after a path move, at most
READ_TIMEOUT_S = 3.0  # one device's facts
ROUTE_TIMEOUT_S = 5.0  # the table following a decision
HEARTBEAT_FIRST_S = 0.5  # after a move routed first, its heartbeat goes before the reconcile
SWITCH_INTERVAL_S = 0.0005
RESOLVE_TIMEOUT_S = 10.0

Offload = Callable[..., Awaitable[Any]]  # runs a blocking call in a worker thread


@dataclass(frozen=True)
class MoveRecord:
    """One path move, as ``status`` lists it."""

    at: float  # wall clock
    old: str | None
    new: str | None
    reason: str
    grace_left_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "from": self.old, "to": self.new, "reason": self.reason,
                "grace_left_s": self.grace_left_s}


@dataclass(frozen=True)
class RoutesSnapshot:
    """The routing part of ``status``."""

    table: int
    priority: int
    mark: int
    pinned: tuple[dict[str, str | None], ...]
    rules: tuple[str, ...]
    routes: tuple[str, ...]


def _read_device(router: Any, modem: str, device: str) -> tuple[bool, bool, Any]:
    """(up, has an address, the path through it or None): one worker-thread call.

    An IPv4 or a global IPv6 address makes the path usable: an IPv6-only modem
    carries the heartbeat as well as a dual-stack one."""
    info = router.link_state(device)
    up, has_address = bool(info.up), bool(info.ipv4 or info.ipv6)
    spec = router.path_of(modem, device) if up and has_address else None
    return up, has_address, spec


class PathKeeper:
    def __init__(
        self,
        config: Config,
        modems: Callable[[], list[ModemView]],
        *,
        router: Any,
        resolver: Resolver,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        offload: Offload = in_daemon_thread,
        grace_left: Callable[[], float] = lambda: 0.0,
        flush: Callable[[list[str]], int] | None = None,
    ) -> None:
        self.config = config
        self.modems = modems
        self.router = router
        self.resolver = resolver
        self.clock = clock
        self.wall = wall
        self.offload = offload
        self.grace_left = grace_left
        self.flush = flush  # the conntrack cut-over (default: adapters.conntrack's)
        self.path = pathsel.PathState()
        self.facts: dict[str, pathsel.PathFacts] = {}
        self.specs: dict[str, Any] = {}  # modem -> the PathSpec through it, as last read
        self.dynamic_hosts: dict[str, str] = {}  # "bankd"/"server" -> host
        self.pinned: list[dict[str, str | None]] = []
        self.rules: list[str] = []
        self.routes: list[str] = []
        self.moves: deque[MoveRecord] = deque(maxlen=10)
        self.stale = True  # the facts want reading again
        self.read_at = float("-inf")  # when they were last read (and the table repaired)
        self.on_decided: Callable[[pathsel.Move], None] | None = None  # before any await
        self.on_routed: Callable[[pathsel.Move], None] | None = None  # the route is in
        self.on_stale: Callable[[], None] | None = None  # something wants a read
        self._events: dict[str, tuple[int, bool]] = {}  # device -> (event number, up)
        self._event_no = 0
        self._route_lock = asyncio.Lock()
        self._cutover: asyncio.Future[Any] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        # A move's route written first (adapters.fastroute.FastRoute; None: the reconcile
        # alone), each usable path's routes ready for it, and the move it last wrote.
        self.fast: Any = None
        self.prepared: dict[str, Prepared] = {}
        self._routed_first: pathsel.Move | None = None
        self._beat_over = asyncio.Event()  # set when the session's heartbeat ends
        self._written = asyncio.Event()  # set when a move's route went in first
        self._generation = 0  # moves whose route went in first, so far

    def open_fast_route(self) -> None:
        """Have a move write its route first, from the event loop (see _route_first)."""
        fast = FastRoute()
        problem = fast.open()
        if problem is not None:
            log.warning("no fast route on a move (%s): the table follows by reconciling",
                        problem)
            return
        self.fast = fast
        # A worker thread decoding a large netlink dump (many pins) holds the GIL for
        # up to the switch interval (5 ms by default) before the event loop gets it to
        # read a link event; a shorter one keeps the move from waiting on it.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))

    # -- the pins ------------------------------------------------------------------------

    def hosts(self) -> list[tuple[str, str]]:
        """(what, host) for every destination to pin; IonMesh's first."""
        host = urlsplit(self.config.ionmesh.url).hostname or ""
        hosts = [("ionmesh", host)]
        hosts += [(kind, h) for kind, h in sorted(self.dynamic_hosts.items())]
        hosts += [("pin", h) for h in self.config.routing.pins]
        return [(what, h) for what, h in hosts if h]

    def pin_host(self, kind: str, host: str) -> bool:
        """osmo-remsim named remsim-server's or bankd's host; True when that is news."""
        if self.dynamic_hosts.get(kind) == host:
            return False
        self.dynamic_hosts[kind] = host
        self._mark_stale()
        return True

    def ionmesh_address(self) -> str | None:
        hosts = self.hosts()
        known = self.resolver.known(hosts[0][1]) if hosts else []
        # Of an IP version the active path carries and, if it can be, the others as
        # last read too: a move or a failback attempt then keeps the same address.
        active = self.facts.get(self.path.active) if self.path.active else None
        paths = [active] if active is not None else []
        paths += [f for f in self.facts.values() if f is not active]
        return pathsel.address_for(known, paths)

    async def resolve(self, force: bool = False) -> None:
        for _what, host in self.hosts():
            if is_address(host) or not (force or self.resolver.due(host)):
                continue
            before = self.resolver.known(host)
            try:
                after = await asyncio.wait_for(self.offload(self.resolver.resolve, host),
                                               RESOLVE_TIMEOUT_S)
            except TimeoutError:
                continue
            if sorted(after) != sorted(before):
                self.stale = True

    def forget_names(self) -> None:
        """After a path failure: resolve every name again, over the new path."""
        for _what, host in self.hosts():
            self.resolver.forget(host)

    def pins(self) -> list[dict[str, str | None]]:
        return [{"host": host, "address": address, "via": self.path.active, "what": what}
                for what, host in self.hosts() for address in self.resolver.known(host)]

    # -- facts ---------------------------------------------------------------------------

    def link_event(self, device: str, up: bool) -> pathsel.Move | None:
        """A netlink link event, with the state the message carried: the facts change
        from it (nothing is read), and a move it calls for starts at once."""
        self._event_no += 1
        self._events[device] = (self._event_no, up)
        if not any(f.device == device for f in self.facts.values()):
            if any(v.device == device for v in self.modems()):
                self._mark_stale()  # a modem's new device: read it
            return None
        self.facts = pathsel.with_link(self.facts, device, up)
        if up:
            self._mark_stale()  # its address and gateway are learned by a read
        return self._decide(*pathsel.on_facts(self.path, self.facts))

    def address_event(self, device: str) -> None:
        """A modem's device gained, changed or lost an address (an IPv6 one arriving
        by RA after the link, leaving DAD, expiring with its prefix): read it again."""
        if any(v.device == device for v in self.modems()):
            self._mark_stale()

    async def refresh(self) -> None:
        """Read every modem's facts from the kernel, then keep or move the path."""
        self.stale = False
        self._written.clear()
        seen = dict(self._events)
        facts: dict[str, pathsel.PathFacts] = {}
        specs: dict[str, Any] = {}
        for view in self.modems():
            up = has_address = False
            if view.device:
                read = asyncio.ensure_future(asyncio.wait_for(
                    self.offload(_read_device, self.router, view.name, view.device),
                    READ_TIMEOUT_S))
                if not await self._unless_written(read):
                    read.cancel()  # a move went in, on the event's facts: its heartbeat first
                    return
                try:
                    up, has_address, spec = read.result()
                    if spec is not None:
                        specs[view.name] = spec
                except Exception as exc:
                    log.debug("reading %s: %s", view.device, exc)
                event = self._events.get(view.device)
                if event is not None and event != seen.get(view.device):
                    up = event[1]  # a link event came in while reading: it is newer
            facts[view.name] = pathsel.PathFacts(
                view.name, view.role, view.device, up, has_address,
                versions=specs[view.name].versions if view.name in specs else ())
        self.facts, self.specs, self.read_at = facts, specs, self.clock()
        move = self._decide(*pathsel.on_facts(self.path, self.facts), start=False)
        if move is not None or self.fast is None:
            await self.carry_out(move)
            return
        # Nothing moved: the reconcile is a repair. Should a link event's move write
        # its route meanwhile, its heartbeat goes without waiting for the repair.
        task = self._spawn(self.carry_out(None))
        if await self._unless_written(task):
            task.result()

    async def _unless_written(self, future: asyncio.Future[Any]) -> bool:
        """Wait for ``future`` unless a move's route goes in first; True if it is done."""
        written = asyncio.ensure_future(self._written.wait())
        try:
            await asyncio.wait({future, written}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            written.cancel()
        return future.done()

    # -- decisions -----------------------------------------------------------------------

    def failback_candidate(self) -> str | None:
        return pathsel.failback_candidate(self.path, self.facts)

    async def heartbeat_acked(self, via: str) -> None:
        """A heartbeat over ``via`` (a failback attempt) was acknowledged."""
        move = self._decide(*pathsel.on_heartbeat_acked(
            self.path, self.facts, via, self.config.routing.failback_after), start=False)
        if move is not None:
            await self._follow(move, after_beat=False)

    def failback_failed(self, via: str) -> None:
        self.path, _ = pathsel.on_heartbeat_failed(self.path, self.facts, via)

    async def heartbeat_failed(self) -> bool:
        """A heartbeat over the active path got nothing back: move if another path is
        usable (a silent blackhole). True when the path moved."""
        await self.refresh()
        if self._written.is_set():
            return True  # a link event moved the path meanwhile: retry over the new one
        move = self._decide(*pathsel.on_heartbeat_failed(self.path, self.facts, None),
                            start=False)
        if move is None:
            return False
        await self._follow(move, after_beat=True)  # the session's retry goes first
        return True

    async def _follow(self, move: pathsel.Move, *, after_beat: bool) -> None:
        """The reconcile after a move the session decided: awaited, unless the route
        went in first (then it follows in its own task and the session goes on)."""
        if self._routed_first is move:
            self._spawn(self.carry_out(move, after_beat=after_beat))
        else:
            await self.carry_out(move)

    async def reroute(self, to: str, reason: str) -> bool:
        """A recovery step: move to ``to`` now, if its path is usable."""
        facts = self.facts.get(to)
        if facts is None or not facts.usable or self.path.active == to:
            return self.path.active == to
        move = pathsel.Move(self.path.active, to, reason)
        self.path = pathsel.PathState(active=to, reason=reason)
        self._route_first(move)
        self._decided(move)
        await self.carry_out(move)
        return True

    def _decide(self, state: pathsel.PathState, move: pathsel.Move | None, *,
                start: bool = True) -> pathsel.Move | None:
        self.path = state
        if move is not None:  # a move not from a read: the next heartbeat reads again
            self.read_at = self.read_at if not start else float("-inf")
            self._route_first(move)
            self._decided(move)
            if start:
                self._spawn(self.carry_out(move, after_beat=True))
        return move

    def _decided(self, move: pathsel.Move) -> None:
        # Logged before any await: whoever sees the new path in status finds the line
        # that says why.
        left = self.grace_left()
        log.warning("heartbeat path %s -> %s: %s (%.0f s of grace left)",
                    move.old or "none", move.new or "none", move.reason, left)
        self.moves.append(MoveRecord(round(self.wall(), 1), move.old, move.new, move.reason,
                                     left))
        if self.on_decided is not None:
            self.on_decided(move)
        if self._routed_first is move and self.on_routed is not None:
            self.on_routed(move)

    def routed_first(self, move: pathsel.Move) -> bool:
        """Whether ``move``'s route went in first, from the decision's own call."""
        return self._routed_first is move

    def _route_first(self, move: pathsel.Move) -> None:
        """A move's first act: the new path's default routes, as prepared at the last
        read, written from here (no thread, no await). The reconcile follows anyway and
        repairs what this did not do."""
        prepared = self.prepared.get(move.new) if move.new is not None else None
        if self.fast is None or prepared is None:
            return
        self._generation += 1  # a reconcile under way for an older decision stops
        problem = self.fast.write(prepared)
        if problem is not None:
            log.warning("could not route via %s at once (%s); the reconcile follows",
                        move.new, problem)
            return
        self._routed_first = move
        self._beat_over.clear()
        self._written.set()
        log.debug("routed via %s first: %s", move.new, prepared.text())

    def heartbeat_over(self) -> None:
        """The session's heartbeat ended (whatever its outcome)."""
        self._beat_over.set()

    # -- the kernel follows --------------------------------------------------------------

    async def carry_out(self, move: pathsel.Move | None, *, after_beat: bool = False) -> None:
        """Make the table hold the path as decided now; after a move, tell the session
        (unless it heard when the route went in first) and cut the pinned connections
        over. ``after_beat``: a move whose route went in first lets the heartbeat it
        asked for go before (bounded by HEARTBEAT_FIRST_S)."""
        if after_beat and move is not None and self._routed_first is move:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_over.wait(), HEARTBEAT_FIRST_S)
        async with self._route_lock:
            pins = self.pins()
            addresses = sorted({p["address"] for p in pins if p["address"]})
            active = self.facts.get(self.path.active) if self.path.active else None
            wanted = [(f.modem, f.device, self.specs.get(f.modem))
                      for f in ([active] if active is not None else [])]
            wanted += [(f.modem, f.device, self.specs.get(f.modem)) for f in self.facts.values()
                       if f.usable and (active is None or f.modem != active.modem)]
            try:
                self.rules, self.routes, prepared = await asyncio.wait_for(
                    self.offload(self._route, addresses, active is not None, wanted,
                                 self._generation),
                    ROUTE_TIMEOUT_S)
                if self.fast is not None:
                    self.prepared = prepared
            except Exception as exc:
                log.error("heartbeat path routing failed: %s", str(exc) or type(exc).__name__)
            self.pinned = pins
        if move is None:
            return
        if self.on_routed is not None and self._routed_first is not move:
            self.on_routed(move)
        if addresses:
            self._start_cutover(addresses)

    def _route(self, addresses: list[str], has_active: bool,
               wanted: list[tuple[str, str | None, Any]], generation: int = 0
               ) -> tuple[list[str], list[str], dict[str, Prepared]]:
        """In a worker thread: reconcile the table, read back what we own, and prepare
        each usable path's routes for a move to it."""
        specs = [spec if spec is not None else self.router.path_of(modem, device)
                 for modem, device, spec in wanted if device]
        path = specs[0] if has_active and specs else None
        standby = specs[1:] if has_active else specs
        if self.fast is None:
            changes = self.router.reconcile(addresses, path, standby)
        else:  # a move's route written meanwhile is not undone by this older decision
            changes = self.router.reconcile(addresses, path, standby,
                                            lambda: self._generation == generation)
        if changes:
            log.debug("routing: %s", changes)
        rules, routes = self.router.owned()
        prepared: dict[str, Prepared] = {}
        if self.fast is not None:
            for spec in specs:  # the active one too: a move back may come before the next read
                try:
                    prepared[spec.name] = Prepared.of(spec.name, self.router.routes_of(spec))
                except Exception as exc:  # that path is routed by the reconcile alone
                    log.debug("preparing the route via %s: %s", spec.name, exc)
        return list(rules), list(routes), prepared

    def _start_cutover(self, addresses: list[str]) -> None:
        previous = self._cutover
        self._cutover = self._spawn(self._cut_over(addresses, previous))

    async def _cut_over(self, addresses: list[str], previous: asyncio.Future[Any] | None) -> None:
        flush = self.flush
        if flush is None:
            from remsim_supervisor.adapters.conntrack import flush_conntrack as flush
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        try:
            flushed = await asyncio.wait_for(self.offload(flush, addresses),
                                             CUTOVER_TIMEOUT_S)
            log.info("cut over %d tracked connection(s) to the pinned hosts", flushed)
        except TimeoutError:
            log.warning("conntrack cut-over for %d pinned address(es) did not finish within "
                        "%.0f s; the heartbeat goes on without waiting for it",
                        len(addresses), CUTOVER_TIMEOUT_S)
        except Exception as exc:
            log.warning("could not flush conntrack for the pinned hosts: %s",
                        str(exc) or type(exc).__name__)

    async def settled(self) -> None:
        """Until the cut-over after the last move is done (it is bounded)."""
        cutover = self._cutover
        if cutover is not None and not cutover.done():
            await asyncio.wait({cutover})

    async def stop(self) -> None:
        """Cancel what is under way, then remove exactly our rules and routes."""
        for task in list(self._tasks):
            task.cancel()
        if self.fast is not None:
            self.fast.close()  # opened again on the next write, should one come
        if self.router is None:
            return
        try:
            changes = await asyncio.wait_for(self.offload(self.router.clear), 2.0)
            if changes:
                log.info("removed %s", "; ".join(changes.removed))
        except Exception as exc:
            log.error("could not remove the heartbeat path's rules: %s", exc)

    def status(self) -> RoutesSnapshot:
        routing = self.config.routing
        return RoutesSnapshot(routing.table, routing.priority, routing.mark,
                              tuple(self.pinned), tuple(self.rules), tuple(self.routes))

    def _mark_stale(self) -> None:
        self.stale = True
        if self.on_stale is not None:
            self.on_stale()

    def _spawn(self, coro: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
