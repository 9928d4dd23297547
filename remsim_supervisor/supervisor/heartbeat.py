"""The heartbeat to IonMesh and the path it takes.

One task owns the conversation with IonMesh (register, heartbeat at the
interval the server asks for, register again on 404, unregister on orderly
stop) and the policy routing that carries it (rules for IonMesh,
remsim-server, bankd and ``pin`` entries to the supervisor's table, whose
default route follows the active path). The decisions are the pure rules of
:mod:`remsim_supervisor.core.paths`; this module feeds them facts and carries
out what they decide:

* facts: each modem's data device from the kernel (link, carrier, address),
  re-read on every netlink link change and before every heartbeat;
* a move: reconcile the table (new default route, the other usable path as
  a standby route for bound sockets), flush the conntrack entries of the
  pinned destinations only, close the kept-alive connection, and send a
  heartbeat at once instead of an interval later;
* a failed heartbeat over the active path while the other path is usable
  (a silent blackhole): move, and retry over the new path at once;
* while the fallback carries the heartbeat, each heartbeat is first tried
  over the preferred (IoT) modem, bound to its device; enough acknowledged
  ones in a row move the path back.

Only a *path* failure (no connection, a timeout or reset before any answer,
on a fresh connection: a dead kept-alive one is retried on a fresh one
first) moves the path or tells the guardian. When IonMesh *answers* without
acknowledging (5xx, a redirect, a 404 that registering again did not cure,
nonsense, too much, too slowly) the path is proven to work: the heartbeat
stays on it and is retried with backoff, ``status`` shows the error under
``heartbeat.server_error`` and, once heartbeats are overdue, the risk to the
SIM under ``grace.at_risk``. Numbers from the server are bounded, and
carriers that forget idle flows are learned per modem
(:mod:`remsim_supervisor.core.cadence` holds those rules).

Blocking work (HTTP over ``http.client``, netlink through pyroute2, DNS)
runs in daemon threads, each with a timeout, never in the event loop.

The grace period is counted from the last acknowledged heartbeat (from the
daemon's start until the first one): :meth:`HeartbeatService.grace` is what
``status`` shows and what the guardian plans against.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remsim_supervisor.core import cadence
from remsim_supervisor.core import paths as pathsel
from remsim_supervisor.config import Config
from remsim_supervisor.adapters.ionmesh import (
    HeartbeatResult,
    IonMeshClient,
    IonMeshError,
    NotRegistered,
)
from remsim_supervisor.adapters.resolve import Resolver, is_address
from remsim_supervisor.adapters.serialport import in_daemon_thread

log = logging.getLogger("remsim_supervisor.supervisor.heartbeat")

STATE_DIR = "/var/run/remsim-supervisor"
CUTOVER_TIMEOUT_S = 3.0  # the conntrack cut-over after a path move, at most
# Bytes a kept-alive HTTP exchange costs on the wire beyond the HTTP text:
# three segments (request, response, ACK), each 20 bytes of IPv4 and 32 of TCP
# with timestamps; a new connection adds its handshake and the close of the
# previous one (measured over plain HTTP: docs/heartbeat-bytes.md).
TCP_IP_OVERHEAD = 3 * 52
NEW_CONNECTION_OVERHEAD = 380
MONTH_S = 30 * 86400
# How a heartbeat attempt ended: acknowledged; IonMesh answered without
# acknowledging (the path works); nothing came back (maybe the path).
ACKED, SERVER, PATH = "acked", "server", "path"


@dataclass(frozen=True)
class ModemView:
    """What the heartbeat needs to know of a modem, from its owner task."""

    name: str
    role: str
    device: str | None
    model: str | None
    status: Mapping[str, Any]


class HeartbeatService:
    def __init__(
        self,
        config: Config,
        modems: Callable[[], list[ModemView]],
        *,
        state_dir: str = STATE_DIR,
        router: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.modems = modems
        self.clock = clock
        self.started = clock()
        self.state_dir = state_dir
        self.router = router  # created in run() unless given (tests)
        routing = config.routing
        self.resolver = Resolver(
            cache_file=os.path.join(state_dir, "resolved.json"),
            period_s=routing.resolve_interval,
            mark=routing.mark,
            timeout=min(3.0, config.ionmesh.timeout),
        )
        self.path = pathsel.PathState()
        self.facts: dict[str, pathsel.PathFacts] = {}
        self.dynamic_hosts: dict[str, str] = {}  # "bankd"/"server" -> host
        self.pinned: list[dict[str, str | None]] = []
        self.rules: list[str] = []
        self.routes: list[str] = []
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
        self._clamped: float | None = None  # the last server value logged as clamped
        self._problems_seen: set[str] = set()
        self._risk_logged = False
        self.registered = False
        self.last_ack: float | None = None
        self.last_rtt_ms: float | None = None
        self.last_error: str | None = None
        self.sent = self.acked = self.failed = 0
        self.wire_bytes: deque[int] = deque(maxlen=20)
        self.bytes_total = 0  # estimated on the wire, every heartbeat since the start
        self._reported: cadence.Reported | None = None  # stats and modem_info IonMesh has
        self.budget_warned = False
        self.moves: deque[dict[str, Any]] = deque(maxlen=10)
        # modem -> (its last heartbeat was acknowledged, when)
        self.outcomes: dict[str, tuple[bool, float]] = {}
        self.on_failure: Callable[[str], None] | None = None  # a heartbeat over a modem failed
        self.on_move: Callable[[], None] | None = None  # the path moved
        self._client: IonMeshClient | None = None
        self._bound: dict[str, IonMeshClient] = {}
        self._wake = asyncio.Event()
        self._beat_requested = False
        self._facts_changed = True
        self._ionmesh_address: str | None = None
        self._lock = asyncio.Lock()

    # -- what the rest of the daemon sees ----------------------------------------

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

    def links_changed(self) -> None:
        """A netlink link event: re-read the facts now."""
        self._facts_changed = True
        self._wake.set()

    def pin_host(self, kind: str, host: str) -> None:
        """osmo-remsim told us remsim-server's or bankd's address: pin it."""
        if self.dynamic_hosts.get(kind) != host:
            self.dynamic_hosts[kind] = host
            self._facts_changed = True
            self._wake.set()

    def modem_ok(self, name: str) -> bool:
        """Can this modem carry the heartbeat: its path is usable and its last one did not fail."""
        facts = self.facts.get(name)
        return facts is not None and facts.usable and self.outcomes.get(name, (True, 0.0))[0]

    def acked_over_since(self, name: str, since: float) -> bool:
        ok, at = self.outcomes.get(name, (False, 0.0))
        return ok and at >= since

    async def reroute(self, to: str, reason: str) -> bool:
        """A recovery step: move the heartbeat to ``to`` now (if its path is usable)."""
        async with self._lock:
            facts = self.facts.get(to)
            if facts is None or not facts.usable or self.path.active == to:
                return self.path.active == to
            move = pathsel.Move(self.path.active, to, reason)
            self.path = pathsel.PathState(active=to, reason=reason)
            await self._apply(move)
        return True

    def beat_now(self) -> None:
        self._beat_requested = True
        self._wake.set()

    def status(self) -> dict[str, Any]:
        active = self.facts.get(self.path.active) if self.path.active else None
        per_beat = round(sum(self.wire_bytes) / len(self.wire_bytes)) if self.wire_bytes else None
        return {
            "heartbeat": {
                "path": self.path.active,
                "interface": active.device if active else None,
                "interval_s": self.interval,
                "registered": self.registered,
                "last_rtt_ms": self.last_rtt_ms,
                "sent": self.sent,
                "acked": self.acked,
                "failed": self.failed,
                "bytes_per_heartbeat": per_beat,
                "bytes_total": self.bytes_total,
                "projected_bytes_30d": (
                    round(per_beat * MONTH_S / self.interval) if per_beat else None
                ),
                "last_error": self.last_error,
                "server_error": (
                    self.server_trouble.status(self.clock()) if self.server_trouble else None
                ),
                "interval_bounds_s": list(self.interval_bounds),
                "idle_limit_s": self.idle.status(self.clock()),
                "schedule_fault": self.schedule_fault,
                "path_reason": self.path.reason,
                "moves": list(self.moves),
            },
            "routes": {
                "table": self.config.routing.table,
                "priority": self.config.routing.priority,
                "mark": f"{self.config.routing.mark:#x}",
                "pinned": list(self.pinned),
                "rules": list(self.rules),
                "routes": list(self.routes),
            },
        }

    # -- the task ----------------------------------------------------------------

    async def run(self) -> None:
        if self.router is None:
            from remsim_supervisor.adapters.routing import Router

            routing = self.config.routing
            self.router = Router(routing.table, routing.priority, mark=routing.mark)
        await self._resolve(force=True)
        next_beat = self.clock()
        while True:
            if self._facts_changed:
                await self._update_paths()
            if self._beat_requested or self.clock() >= next_beat:
                self._beat_requested = False
                await self._resolve()
                await self._update_paths()
                outcome = await self._beat()
                # _beat retried on its own after any move it made.
                self._beat_requested = False
                delay = self.interval
                if outcome == SERVER and self.server_trouble is not None:
                    delay = self.server_trouble.retry_in(self.interval)
                next_beat = self.clock() + delay
            if self._facts_changed or self._beat_requested:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - self.clock()))
            except TimeoutError:
                pass
            self._wake.clear()

    async def stop(self, budget_s: float = 2.5) -> None:
        """Orderly stop: unregister (briefly), then remove exactly our rules and routes."""
        client = self._client
        if client is not None and self.registered:
            client.timeout = min(client.timeout, max(0.5, budget_s - 0.5))
            try:
                await asyncio.wait_for(in_daemon_thread(client.unregister), budget_s)
                log.info("unregistered from IonMesh")
            except (TimeoutError, IonMeshError) as exc:
                log.warning("could not unregister from IonMesh: %s", exc)
        for c in [self._client, *self._bound.values()]:
            if c is not None:
                c.close()
        if self.router is not None:
            try:
                changes = await asyncio.wait_for(in_daemon_thread(self.router.clear), 2.0)
                if changes:
                    log.info("removed %s", "; ".join(changes.removed))
            except Exception as exc:
                log.error("could not remove the heartbeat path's rules: %s", exc)

    # -- names and paths -------------------------------------------------------------

    def _hosts(self) -> list[tuple[str, str]]:
        """(what, host) for every destination to pin."""
        from urllib.parse import urlsplit

        host = urlsplit(self.config.ionmesh.url).hostname or ""
        hosts = [("ionmesh", host)]
        hosts += [(kind, h) for kind, h in sorted(self.dynamic_hosts.items())]
        hosts += [("pin", h) for h in self.config.routing.pins]
        return [(what, h) for what, h in hosts if h]

    async def _resolve(self, force: bool = False) -> None:
        for _what, host in self._hosts():
            if is_address(host) or not (force or self.resolver.due(host)):
                continue
            before = self.resolver.known(host)
            try:
                after = await asyncio.wait_for(in_daemon_thread(self.resolver.resolve, host), 10.0)
            except TimeoutError:
                continue
            if sorted(after) != sorted(before):  # type: ignore[arg-type]
                self._facts_changed = True

    def _pins(self) -> list[dict[str, str | None]]:
        pins = []
        for what, host in self._hosts():
            for address in self.resolver.known(host):
                pins.append(
                    {"host": host, "address": address, "via": self.path.active, "what": what}
                )
        return pins

    async def _read_facts(self) -> dict[str, pathsel.PathFacts]:
        facts = {}
        for view in self.modems():
            up, has_address = False, False
            if view.device:
                try:
                    info = await asyncio.wait_for(
                        in_daemon_thread(self.router.link_state, view.device), 3.0
                    )
                    up, has_address = info.up, bool(info.ipv4)
                except Exception as exc:
                    log.debug("reading %s: %s", view.device, exc)
            facts[view.name] = pathsel.PathFacts(view.name, view.role, view.device, up, has_address)
        return facts

    async def _update_paths(self) -> None:
        async with self._lock:
            self._facts_changed = False
            self.facts = await self._read_facts()
            self.path, move = pathsel.on_facts(self.path, self.facts)
            await self._apply(move)

    async def _apply(self, move: pathsel.Move | None) -> None:
        """Make the kernel follow the decision; a move also cuts pinned connections over."""
        from remsim_supervisor.adapters.routing import RoutingError

        if move is not None:
            # Logged before any await: whoever sees the new path in status
            # finds the line that says why.
            left = self.grace()["remaining_s"]
            log.warning(
                "heartbeat path %s -> %s: %s (%.0f s of grace left)",
                move.old or "none",
                move.new or "none",
                move.reason,
                left,
            )
            self.moves.append(
                {
                    "at": round(time.time(), 1),
                    "from": move.old,
                    "to": move.new,
                    "reason": move.reason,
                    "grace_left_s": left,
                }
            )
            if self.on_move is not None:
                self.on_move()
        pins = self._pins()
        addresses = sorted({p["address"] for p in pins if p["address"]})
        active = self.facts.get(self.path.active) if self.path.active else None
        try:
            path = (
                await in_daemon_thread(self.router.path_of, active.modem, active.device)
                if active is not None and active.device
                else None
            )
            standby = []
            for f in self.facts.values():
                if f.usable and f.device and (active is None or f.modem != active.modem):
                    standby.append(await in_daemon_thread(self.router.path_of, f.modem, f.device))
            changes = await asyncio.wait_for(
                in_daemon_thread(self.router.reconcile, addresses, path, standby), 5.0
            )
            if changes:
                log.debug("routing: %s", changes)
            self.rules, self.routes = await in_daemon_thread(self.router.owned)
        except (TimeoutError, RoutingError, OSError) as exc:
            log.error("heartbeat path routing failed: %s", exc)
        self.pinned = pins
        if move is None:
            return
        if addresses:
            try:
                from remsim_supervisor.adapters.conntrack import flush_conntrack

                flushed = await asyncio.wait_for(in_daemon_thread(flush_conntrack, addresses),
                                                 CUTOVER_TIMEOUT_S)
                log.info("cut over %d tracked connection(s) to the pinned hosts", flushed)
            except TimeoutError:
                log.warning("conntrack cut-over for %d pinned address(es) did not finish within "
                            "%.0f s; the heartbeat goes on without waiting for it",
                            len(addresses), CUTOVER_TIMEOUT_S)
            except Exception as exc:
                log.warning("could not flush conntrack for the pinned hosts: %s",
                            str(exc) or type(exc).__name__)
        if self._client is not None:
            self._client.close()  # the next request opens a connection on the new path
        self.beat_now()  # a heartbeat now, not an interval later

    # -- heartbeats ------------------------------------------------------------------

    def _address(self) -> str | None:
        host = self._hosts()[0][1]
        known = self.resolver.known(host)
        return known[0] if known else None

    def _make_client(self, device: str | None) -> IonMeshClient:
        return IonMeshClient.from_config(
            self.config.ionmesh,
            bind_device=device,
            mark=self.config.routing.mark,
            connect_address=self._address(),
        )

    def _client_for(self, modem: str | None) -> IonMeshClient:
        address = self._address()
        if address != self._ionmesh_address:
            # IonMesh moved: every kept connection points at the old address.
            for c in [self._client, *self._bound.values()]:
                if c is not None:
                    c.close()
            self._client, self._bound = None, {}
            self._ionmesh_address = address
        if modem is None:
            if self._client is None:
                self._client = self._make_client(None)
            return self._client
        device = self.facts[modem].device
        client = self._bound.get(modem)
        if client is None or client.bind_device != device:
            if client is not None:
                client.close()
            client = self._bound[modem] = self._make_client(device)
        return client

    def _stats(self) -> tuple[dict[str, Any], dict[str, Any]]:
        stats: dict[str, Any] = {}
        try:
            stats["uptime_seconds"] = int(float(Path("/proc/uptime").read_text().split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        views = {v.name: v for v in self.modems()}
        carrier = views.get(self.path.active or "") or next(
            (v for v in views.values() if v.role == "iot"), None
        )
        info: dict[str, Any] = {}
        if carrier is not None:
            signal = carrier.status.get("signal") or {}
            if "rssi_dbm" in signal:
                stats["signal_rssi"] = signal["rssi_dbm"]
            if "rsrp_dbm" in signal:
                stats["signal_rsrp"] = signal["rsrp_dbm"]
            if carrier.device:
                for key, name in (("data_rx_bytes", "rx_bytes"), ("data_tx_bytes", "tx_bytes")):
                    try:
                        stats[key] = int(
                            Path(f"/sys/class/net/{carrier.device}/statistics/{name}").read_text()
                        )
                    except (OSError, ValueError):
                        pass
            identity = carrier.status.get("identity") or {}
            info = {
                "vendor": identity.get("manufacturer"),
                "model": identity.get("model"),
                "firmware": identity.get("revision"),
                "network": carrier.status.get("operator"),
            }
        return stats, info

    async def _call(self, client: IonMeshClient, what: str) -> Any:
        """One blocking client call in a daemon thread, bounded by the client's timeout."""
        if what == "register":
            model = next((v.model for v in self.modems() if v.role == "iot"), None)
            hardware = {"modem_model": model} if model else None
            return await asyncio.wait_for(
                in_daemon_thread(client.register, hardware), client.timeout * 2 + 2
            )
        stats, info = self._stats()
        carrier = self.path.active
        send_stats, send_info = cadence.report(stats, info, carrier, self._reported)
        # Two timeouts: a kept-alive connection found dead, then a fresh one.
        result = await asyncio.wait_for(
            in_daemon_thread(client.heartbeat, "active", send_stats, send_info),
            client.timeout * 2 + 2,
        )
        self._reported = cadence.reported(self._reported, send_stats, send_info, carrier)
        return result

    async def _exchange(self, modem: str | None) -> str:
        """Register if needed and send one heartbeat over ``modem`` (None: the active path).

        Returns :data:`ACKED`, :data:`SERVER` or :data:`PATH`.
        """
        client = self._client_for(modem)
        via = modem or self.path.active or "main table"
        over = modem or self.path.active
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

    async def _attempt(self, client: IonMeshClient, via: str, over: str | None) -> str:
        rejected: IonMeshError | None = None
        for _attempt in range(2):
            try:
                if not self.registered:
                    assignment = await self._call(client, "register")
                    self.registered = True
                    self._reported = None  # a new registration hears everything again
                    self._warn_problems(assignment.problems)
                    if assignment.heartbeat_interval:
                        self._use_interval(assignment.heartbeat_interval, "at registration")
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

    def _use_interval(self, asked: int, where: str) -> None:
        low, high = self.interval_bounds
        value = cadence.clamp_interval(asked, low, high)
        if value != asked:
            if self._clamped != asked:
                self._clamped = asked
                bound = (
                    "ionmesh.min_heartbeat_interval"
                    if value == low and asked < low
                    else "grace_period - margin - timeout"
                )
                log.warning(
                    "IonMesh asked %s for a heartbeat every %.20s s: using %g s (%s)",
                    where,
                    str(asked),
                    value,
                    bound,
                )
        else:
            self._clamped = None
        self.interval = value

    def _warn_problems(self, problems: tuple[str, ...]) -> None:
        for problem in problems:
            if problem not in self._problems_seen:
                if len(self._problems_seen) >= 32:
                    self._problems_seen.clear()
                self._problems_seen.add(problem)
                log.warning("IonMesh answer: %s", problem)

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
        wire = exchange.bytes_sent + exchange.bytes_received + TCP_IP_OVERHEAD
        if exchange.new_connection:
            wire += NEW_CONNECTION_OVERHEAD
        self.wire_bytes.append(wire)
        self.bytes_total += wire
        self._warn_problems(result.problems)
        if result.next_interval:
            self._use_interval(result.next_interval, "in a heartbeat answer")
        if result.commands_total:
            log.info(
                "IonMesh sent %d command(s) with the heartbeat, none run (none are "
                "supported): %s",
                result.commands_total,
                cadence.command_summary(result.commands, result.commands_total),
            )
        log.debug(
            "heartbeat acknowledged over %s in %.1f ms (%d bytes)", via, exchange.rtt_ms, wire
        )
        budget = self.config.supervisor.data_budget_mb
        if budget and not self.budget_warned and len(self.wire_bytes) >= 5:
            projected = sum(self.wire_bytes) / len(self.wire_bytes) * MONTH_S / self.interval
            if projected > budget * 1e6:
                self.budget_warned = True
                log.warning(
                    "heartbeats alone project to %.1f MB in 30 days, over the %.0f MB "
                    "data budget of the IoT SIM",
                    projected / 1e6,
                    budget,
                )

    async def _beat(self) -> str:
        """This interval's heartbeat, with failback attempts and failover retries.

        Only a path failure moves the path; a server failure ends the beat (the
        caller retries it sooner than an interval, over the same path).
        """
        candidate = pathsel.failback_candidate(self.path, self.facts)
        if candidate is not None:
            outcome = await self._exchange(candidate)
            if outcome == ACKED:
                self.path, move = pathsel.on_heartbeat_acked(
                    self.path, self.facts, candidate, self.config.routing.failback_after
                )
                if move is not None:
                    await self._apply(move)
                return ACKED
            if outcome == SERVER:
                return SERVER
            self.path, _ = pathsel.on_heartbeat_failed(self.path, self.facts, candidate)
        outcome = await self._exchange(None)
        if outcome != PATH:
            return outcome
        # Not acknowledged over the active path: is it silently dropping traffic?
        await self._update_paths()
        self.path, move = pathsel.on_heartbeat_failed(self.path, self.facts, None)
        if move is not None:
            await self._apply(move)
            self._resolve_after_failure()
            return await self._exchange(None)  # the retry, at once, over the new path
        return PATH

    def _resolve_after_failure(self) -> None:
        for _what, host in self._hosts():
            self.resolver.forget(host)
