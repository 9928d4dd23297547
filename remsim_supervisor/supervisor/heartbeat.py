"""The heartbeat to IonMesh: the session.

One task owns the conversation with IonMesh: register, heartbeat at the
interval the server asks for, register again on 404, unregister on orderly
stop. Its path is the :class:`~remsim_supervisor.supervisor.pathkeeper.PathKeeper`'s
(facts, moves, pins, the table, the conntrack cut-over); what a heartbeat
costs and carries, :mod:`remsim_supervisor.supervisor.usage`'s; ``status``
is rendered from a typed snapshot by :mod:`remsim_supervisor.supervisor.hbstatus`.

* a netlink link event moves the path at once, from the event's own state
  (:meth:`HeartbeatService.links_changed`); a move closes the kept-alive
  connection and sends a heartbeat at once instead of an interval later;
* a failed heartbeat over the active path while the other path is usable
  (a silent blackhole): move, and retry over the new path at once;
* while the fallback carries the heartbeat, each heartbeat is first tried
  over the preferred (IoT) modem, bound to its device; enough acknowledged
  ones in a row move the path back;
* the kernel is read on link/address events, unacked beats and every ``REREAD_S``.

Only a *path* failure (nothing came back on a fresh connection: a dead
kept-alive one is retried on a fresh one first) moves the path or tells the
guardian. When IonMesh *answers* without acknowledging (5xx, a redirect, a
404 that registering again did not cure, nonsense, too much, too slowly) the
path works: the heartbeat stays on it and is retried with backoff, shown
under ``heartbeat.server_error`` and, once overdue, ``grace.at_risk``. The
rules of numbers from the server and of carriers that forget idle flows are
:mod:`remsim_supervisor.core.cadence`'s.

Time comes from an injected clock and waits from an injected sleeper;
blocking work runs in daemon threads, each with a timeout. The grace period
is counted from the last acknowledged heartbeat (from the start until the
first one): :meth:`HeartbeatService.grace` is what ``status`` shows and what
the guardian plans against.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from remsim_supervisor.adapters.ionmesh import IonMeshClient
from remsim_supervisor.adapters.resolve import Resolver
from remsim_supervisor.adapters.serialport import in_daemon_thread
from remsim_supervisor.config import Config
from remsim_supervisor.core import cadence
from remsim_supervisor.core import paths as pathsel
from remsim_supervisor.core.ionmesh import HeartbeatResult, IonMeshError, NotRegistered
from remsim_supervisor.supervisor import hbstatus
from remsim_supervisor.supervisor.answers import AnswerLog, Clients
from remsim_supervisor.supervisor.pathkeeper import CUTOVER_TIMEOUT_S, Offload, PathKeeper
from remsim_supervisor.supervisor.usage import (
    NEW_CONNECTION_OVERHEAD,
    TCP_IP_OVERHEAD,
    ModemView,
    WireUsage,
    read_stats,
)

__all__ = [
    "ACKED", "CUTOVER_TIMEOUT_S",
    "NEW_CONNECTION_OVERHEAD",
    "PATH",
    "SERVER",
    "STATE_DIR",
    "TCP_IP_OVERHEAD",
    "HeartbeatService",
    "ModemView",
]

log = logging.getLogger("remsim_supervisor.supervisor.heartbeat")

STATE_DIR = "/var/run/remsim-supervisor"
# How a heartbeat attempt ended: acknowledged; IonMesh answered without
# acknowledging (the path works); nothing came back (maybe the path).
ACKED, SERVER, PATH = "acked", "server", "path"
REREAD_S = 300.0  # after an acked beat, the kernel is read (the table repaired) this often

Sleep = Callable[[float], Awaitable[None]]


class HeartbeatService:
    def __init__(
        self,
        config: Config,
        modems: Callable[[], list[ModemView]],
        *,
        state_dir: str = STATE_DIR,
        router: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        offload: Offload = in_daemon_thread,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.modems, self.clock, self.sleep = config, modems, clock, sleep
        self.offload = offload
        self.started = clock()
        self.state_dir = state_dir
        routing = config.routing
        resolver = Resolver(
            cache_file=os.path.join(state_dir, "resolved.json"),
            period_s=routing.resolve_interval,
            mark=routing.mark,
            timeout=min(3.0, config.ionmesh.timeout),
            clock=clock,
        )
        # The router is created in run() unless given (tests).
        self.keeper = PathKeeper(config, modems, router=router, resolver=resolver, clock=clock,
                                 wall=wall, offload=offload,
                                 grace_left=lambda: float(self.grace()["remaining_s"]))
        self.keeper.on_decided = self._path_decided
        self.keeper.on_routed = self._path_routed
        ionmesh = config.ionmesh
        self.interval_bounds = cadence.interval_bounds(
            ionmesh.min_heartbeat_interval, config.supervisor.grace_period,
            config.escalation.margin, ionmesh.timeout)
        self.interval = cadence.clamp_interval(ionmesh.heartbeat_interval, *self.interval_bounds)
        self.server_trouble: cadence.ServerTrouble | None = None
        self.idle = cadence.IdleLimit()
        self.last_attempt_end = self.started  # the schedule the guardian watches
        self.in_flight_since: float | None = None
        self.schedule_fault: str | None = None  # set by the guardian while it lasts
        self.answers = AnswerLog()
        self._risk_logged = False
        self.registered = False
        self.last_ack: float | None = None
        self.last_rtt_ms: float | None = None
        self.last_error: str | None = None
        self.sent = self.acked = self.failed = 0
        self.usage = WireUsage(config.supervisor.data_budget_mb)
        self._reported: cadence.Reported | None = None  # stats and modem_info IonMesh has
        # modem -> (its last heartbeat was acknowledged, when)
        self.outcomes: dict[str, tuple[bool, float]] = {}
        self.on_failure: Callable[[str], None] | None = None  # a heartbeat over a modem failed
        self.on_move: Callable[[], None] | None = None  # the path moved
        self.clients = Clients(config)
        self._wake = asyncio.Event()
        self.keeper.on_stale = self._wake.set
        self._beat_requested = False
        self._moved = False  # a move's route went in first: the heartbeat goes without a read

    # -- what the rest of the daemon sees ----------------------------------------

    @property
    def path(self) -> pathsel.PathState:
        return self.keeper.path

    @property
    def moves(self) -> list[dict[str, Any]]:
        return [m.as_dict() for m in self.keeper.moves]

    def grace(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        since = self.last_ack if self.last_ack is not None else self.started
        period = self.config.supervisor.grace_period
        return {
            "period_s": period,
            "last_ack_age_s": None if self.last_ack is None else round(now - self.last_ack, 1),
            "remaining_s": round(period - (now - since), 1),
            "at_risk": self.at_risk(now),
        }

    def at_risk(self, now: float | None = None) -> str | None:
        """Why the SIM is at risk while IonMesh answers but does not acknowledge, or None.

        At risk once a heartbeat is overdue (no acknowledgement for longer than
        an interval and a timeout): the grace runs down, and no recovery step
        on a modem can help, since the path works.
        """
        trouble = self.server_trouble
        if trouble is None:
            return None
        now = self.clock() if now is None else now
        since = self.last_ack if self.last_ack is not None else self.started
        if now - since <= self.interval + self.config.ionmesh.timeout:
            return None
        left = self.config.supervisor.grace_period - (now - since)
        return (f"no heartbeat acknowledged for {now - since:.0f} s ({left:.0f} s of grace "
                f"left): IonMesh answers but does not acknowledge ({trouble.message}); "
                "the path works, so no modem is reset for it")

    def note_schedule_fault(self, reason: str | None) -> None:
        """The guardian found the heartbeat behind its schedule (None: no longer)."""
        self.schedule_fault = reason
        if reason is not None:
            self.beat_now()

    def links_changed(self, name: str | None = None, up: bool | None = None) -> None:
        """A link changed. With the event's link name and state (from the netlink
        message), the facts change from them and a move starts at once, nothing read
        again; without them, every modem's facts are read again before long."""
        if name is None or up is None:
            self.keeper.stale = True
            self._wake.set()
            return
        self.keeper.link_event(name, up)

    def pin_host(self, kind: str, host: str) -> None:
        """osmo-remsim told us remsim-server's or bankd's address: pin it."""
        self.keeper.pin_host(kind, host)

    def modem_ok(self, name: str) -> bool:
        """Can this modem carry the heartbeat: its path is usable and its last one did not fail."""
        facts = self.keeper.facts.get(name)
        return facts is not None and facts.usable and self.outcomes.get(name, (True, 0.0))[0]

    def acked_over_since(self, name: str, since: float) -> bool:
        ok, at = self.outcomes.get(name, (False, 0.0))
        return ok and at >= since

    async def reroute(self, to: str, reason: str) -> bool:
        """A recovery step: move the heartbeat to ``to`` now (if its path is usable)."""
        return await self.keeper.reroute(to, reason)

    def beat_now(self) -> None:
        self._beat_requested = True
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return hbstatus.render(hbstatus.snapshot_of(self), self.keeper.status())

    # -- the task ----------------------------------------------------------------

    async def run(self) -> None:
        keeper = self.keeper
        if keeper.router is None:
            from remsim_supervisor.adapters.routing import Router

            routing = self.config.routing
            keeper.router = Router(routing.table, routing.priority, mark=routing.mark)
            keeper.open_fast_route()
        await keeper.resolve(force=True)
        next_beat, outcome = self.clock(), ACKED  # as good as acked: the start reads
        while True:
            if keeper.stale and not self._moved:  # after a move: its heartbeat, then the read
                await keeper.refresh()
            if self._beat_requested or self.clock() >= next_beat:
                moved, self._beat_requested, self._moved = self._moved, False, False
                if not moved:  # else the facts are the link event's, and current
                    await keeper.resolve()  # events keep the facts; a read repairs the table
                    if (keeper.stale or outcome != ACKED
                            or self.clock() > keeper.read_at + REREAD_S):
                        await keeper.refresh()
                outcome = await self._beat()
                delay = self.interval
                if outcome == SERVER and self.server_trouble is not None:
                    delay = self.server_trouble.retry_in(self.interval)
                next_beat = self.clock() + delay
            if keeper.stale or self._beat_requested:
                continue
            await self._until(next_beat)

    async def _until(self, when: float) -> None:
        """Sleep until ``when`` or until woken (a link event, a request for a heartbeat)."""
        if not self._wake.is_set():
            sleeper = asyncio.ensure_future(self.sleep(max(0.0, when - self.clock())))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
        self._wake.clear()

    async def stop(self, budget_s: float = 2.5) -> None:
        """Orderly stop: unregister (briefly), then remove exactly our rules and routes."""
        client = self.clients.main
        if client is not None and self.registered:
            client.timeout = min(client.timeout, max(0.5, budget_s - 0.5))
            try:
                await asyncio.wait_for(self.offload(client.unregister), budget_s)
                log.info("unregistered from IonMesh")
            except (TimeoutError, IonMeshError) as exc:
                log.warning("could not unregister from IonMesh: %s", exc)
        self.clients.close_all()
        await self.keeper.stop()

    # -- moves -------------------------------------------------------------------------

    def _path_decided(self, move: pathsel.Move) -> None:
        if self.on_move is not None:
            self.on_move()

    def _path_routed(self, move: pathsel.Move) -> None:
        if self.clients.main is not None:
            self.clients.main.close()  # the next request opens a connection on the new path
        self._moved = self.keeper.routed_first(move)
        self.beat_now()  # a heartbeat now, not an interval later

    # -- heartbeats ------------------------------------------------------------------

    def _client_for(self, modem: str | None) -> IonMeshClient:
        device = self.keeper.facts[modem].device if modem is not None else None
        return self.clients.get(modem, device, self.keeper.ionmesh_address())

    async def _call(self, client: IonMeshClient, what: str) -> Any:
        """One blocking client call in a daemon thread, bounded by the client's timeout."""
        if what == "register":
            model = next((v.model for v in self.modems() if v.role == "iot"), None)
            hardware = {"modem_model": model} if model else None
            return await asyncio.wait_for(
                self.offload(client.register, hardware), client.timeout * 2 + 2
            )
        carrier = self.keeper.path.active
        stats, info = read_stats(self.modems(), carrier)
        send_stats, send_info = cadence.report(stats, info, carrier, self._reported)
        # Two timeouts: a kept-alive connection found dead, then a fresh one.
        result = await asyncio.wait_for(
            self.offload(client.heartbeat, "active", send_stats, send_info),
            client.timeout * 2 + 2,
        )
        self._reported = cadence.reported(self._reported, send_stats, send_info, carrier)
        return result

    async def _exchange(self, modem: str | None) -> str:
        """Register if needed and send one heartbeat over ``modem`` (None: the active path).

        Returns :data:`ACKED`, :data:`SERVER` or :data:`PATH`.
        """
        # No wait for the conntrack cut-over: a connection opened now takes the new route.
        client = self._client_for(modem)
        via = modem or self.keeper.path.active or "main table"
        over = modem or self.keeper.path.active
        now = self.clock()
        if over and self.idle.fresh(over, client.idle_s(), now):
            # The carrier has forgotten this flow by now: do not wait a timeout to learn it.
            log.debug("heartbeat over %s on a fresh connection (idle %.0f s)", via,
                      client.idle_s() or 0.0)
            client.close(abort=True)
        self.in_flight_since = now
        try:
            return await self._attempt(client, via, over)
        finally:
            self.in_flight_since = None
            self.last_attempt_end = self.clock()
            self.keeper.heartbeat_over()

    async def _attempt(self, client: IonMeshClient, via: str, over: str | None) -> str:
        rejected: IonMeshError | None = None
        for _attempt in range(2):
            try:
                if not self.registered:
                    assignment = await self._call(client, "register")
                    self.registered = True
                    self._reported = None  # a new registration hears everything again
                    self.answers.problems(assignment.problems)
                    if assignment.heartbeat_interval:
                        self.interval = self.answers.interval(
                            assignment.heartbeat_interval, self.interval_bounds, "at registration")
                    log.info(
                        "registered with IonMesh over %s (heartbeat every %.0f s)",
                        via,
                        self.interval,
                    )
                self.sent += 1
                result = await self._call(client, "heartbeat")
            except NotRegistered as exc:
                self.failed += 1
                self.last_error = f"over {via}: {exc}"
                log.warning("IonMesh does not know this router (404): registering again")
                self.registered = False
                rejected = exc
                continue
            except IonMeshError as exc:
                if not exc.answered:
                    return self._path_failed(client, via, over, exc)
                return self._server_failed(via, over, str(exc))
            except (TimeoutError, OSError) as exc:
                return self._path_failed(client, via, over, exc)
            except Exception as exc:  # an answer of a shape nobody foresaw: survive it
                log.error("heartbeat over %s: unreadable answer from IonMesh (%s: %.200s)",
                          via, type(exc).__name__, exc)
                return self._server_failed(via, over, f"unreadable answer ({type(exc).__name__})")
            if over:
                self.outcomes[over] = (True, self.clock())
            self._acknowledged(result, via, over)
            return ACKED
        assert rejected is not None
        return self._server_failed(via, over, f"{rejected} (registered again: still unknown)",
                                   counted=True)

    def _path_failed(self, client: IonMeshClient, via: str, over: str | None,
                     exc: BaseException) -> str:
        """Nothing came back: maybe the path. The caller may move it; the guardian hears."""
        self.server_trouble, self._risk_logged = None, False  # what the server does is unknown
        if over:
            self.outcomes[over] = (False, self.clock())
            if self.on_failure is not None:
                self.on_failure(over)
        self.failed += 1
        self.last_error = f"over {via}: {exc}" if str(exc) else f"over {via}: timed out"
        log.warning(
            "heartbeat over %s failed: %s (%.0f s of grace left)",
            via,
            exc or "timed out",
            self.grace()["remaining_s"],
        )
        client.close()
        return PATH

    def _server_failed(self, via: str, over: str | None, message: str, *,
                       counted: bool = False) -> str:
        """IonMesh answered without acknowledging: the path works; retry over it, later.
        ``counted``: the failed heartbeats were counted already (404, one by one)."""
        now = self.clock()
        if over:
            self.outcomes[over] = (True, now)  # its answer came back over this path
        if not counted:
            self.failed += 1
        self.last_error = f"over {via}: {message}"
        self.server_trouble = cadence.server_trouble(self.server_trouble, message, now)
        trouble = self.server_trouble
        log.warning(
            "IonMesh did not acknowledge the heartbeat over %s: %s (%d in a row; %.0f s of "
            "grace left; the path works and stays, retry in %.0f s)",
            via,
            message,
            trouble.count,
            self.grace(now)["remaining_s"],
            trouble.retry_in(self.interval),
        )
        risk = self.at_risk(now)
        if risk is not None and not self._risk_logged:
            self._risk_logged = True
            log.error("the remote SIM is at risk: %s", risk)
        return SERVER

    def _acknowledged(self, result: HeartbeatResult, via: str, over: str | None) -> None:
        exchange = result.exchange
        now = self.clock()
        self.acked += 1
        self.last_ack = now
        self.last_rtt_ms = round(exchange.rtt_ms, 1)
        self.last_error = None
        if self.server_trouble is not None:
            trouble = self.server_trouble
            log.info(
                "IonMesh acknowledges heartbeats again, after %d error(s) over %.0f s",
                trouble.count,
                now - trouble.since,
            )
            self.server_trouble = None
            self._risk_logged = False
        if over and exchange.stale_idle_s is not None:
            before = self.idle.learned(over, now)
            self.idle = self.idle.forgot(over, exchange.stale_idle_s, now)
            after = self.idle.learned(over, now)
            if after != before:
                log.info(
                    "%s's carrier forgot a connection idle for %.0f s: heartbeats after "
                    "%.0f s idle start on a fresh connection",
                    over,
                    exchange.stale_idle_s,
                    (after or 0.0) * cadence.FORGET_SLACK,
                )
        self.answers.problems(result.problems)
        if result.next_interval:
            self.interval = self.answers.interval(result.next_interval, self.interval_bounds,
                                                  "in a heartbeat answer")
        if result.commands_total:
            log.info(
                "IonMesh sent %d command(s) with the heartbeat, none run (none are "
                "supported): %s",
                result.commands_total,
                cadence.command_summary(result.commands, result.commands_total),
            )
        wire = self.usage.record(exchange, self.interval)
        log.debug(
            "heartbeat acknowledged over %s in %.1f ms (%d bytes)", via, exchange.rtt_ms, wire
        )

    async def _beat(self) -> str:
        """This interval's heartbeat, with failback attempts and failover retries.

        Only a path failure moves the path; a server failure ends the beat (the
        caller retries it sooner than an interval, over the same path).
        """
        keeper = self.keeper
        candidate = keeper.failback_candidate()
        if candidate is not None:
            outcome = await self._exchange(candidate)
            if outcome == ACKED:
                await keeper.heartbeat_acked(candidate)
                self._beat_requested = self._moved = False  # the heartbeat a move asks for
                return ACKED
            if outcome == SERVER:
                return SERVER
            keeper.failback_failed(candidate)
        outcome = await self._exchange(None)
        if outcome != PATH:
            return outcome
        # Not acknowledged over the active path: is it silently dropping traffic?
        if await keeper.heartbeat_failed():
            keeper.forget_names()
            self._beat_requested = self._moved = False  # the retry below: the one the move asks for
            return await self._exchange(None)  # the retry, at once, over the new path
        return PATH
