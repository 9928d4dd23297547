"""osmo-remsim-client's events, coalesced into SIM switches, modem resets and pins.

The daemon's consumer of the events the control socket takes (``{"cmd":
"event"}``): it queues them, waits for each batch to settle and applies the
pure rule of :mod:`remsim_supervisor.core.simplan` (where the rule is written
down) to the primary modem: its SIM line moved at most once per transition,
then the modem reset exactly once. ``event-config-bankd`` and
``event-server-connect`` pin the bankd and remsim-server addresses to the
heartbeat path at once, without waiting for the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from remsim_supervisor.core.simplan import (
    BANKD_PORT,
    CONFIG_BANKD,
    KNOWN_CAUSES,
    MAX_PENDING,
    MODEM_STATUS,
    SERVER_CONNECT,
    SERVER_PORT,
    Event,
    Memory,
    format_hostport,
    origin_from_wire,
    parse_hostport,
    plan,
    remember,
    settle_due,
    side_name,
)

__all__ = ["HISTORY", "SimSwitcher"]

log = logging.getLogger(__name__)

HISTORY = 10  # transitions shown in status

Sleep = Callable[[float], Awaitable[object]]


class SimSwitcher:
    """Takes events from the control socket and applies their net effect.

    ``set_sim(remote)`` drives the primary modem's SIM line; ``get_sim()``
    reads the selection back (None: unknown); ``reset_modem(reason)`` resets
    the primary modem once; ``pin(kind, "host:port")`` pins ``bankd`` or
    ``server`` to the heartbeat path. ``sleep`` and ``clock`` are injectable so
    tests run on simulated time. :meth:`run` is the one task that calls them.
    """

    def __init__(
        self,
        *,
        set_sim: Callable[[bool], Awaitable[None]],
        get_sim: Callable[[], bool | None],
        reset_modem: Callable[[str], Awaitable[bool]],
        pin: Callable[[str, str], Awaitable[None]],
        settle_s: float = 0.5,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settle_s <= 0:
            raise ValueError(f"settle_s must be positive, not {settle_s}")
        self._set_sim, self._get_sim = set_sim, get_sim
        self._reset_modem, self._pin = reset_modem, pin
        self.settle_s = settle_s
        self._sleep: Sleep = sleep or asyncio.sleep
        self._clock = clock
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._pins: asyncio.Queue[tuple[str, str, tuple[int, int] | None]] = asyncio.Queue(64)
        self._pinned: dict[str, tuple[str, tuple[int, int] | None]] = {}
        self._memory = Memory()
        self._seq = 0
        self._events = 0
        self._applying = False
        self._transitions: deque[dict[str, Any]] = deque(maxlen=HISTORY)

    async def submit(
        self, cause: str, env: Mapping[str, str], origin: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Queue one event; never waits for its effect. ``origin`` is the event
        process's ``{"ticks", "pid", "age_s"}`` (see ``event.py``), if known."""
        if cause not in KNOWN_CAUSES:
            log.warning("osmo-remsim: unknown event cause %r ignored", cause[:64])
            return {
                "ok": False,
                "error": f"unknown cause {cause[:64]!r}: known causes are "
                + ", ".join(sorted(KNOWN_CAUSES)),
            }
        now = self._clock()
        known = origin_from_wire(origin)
        order, started = (known[0], now - known[1]) if known is not None else (None, None)
        self._seq += 1
        self._events += 1
        event = Event(cause, now, self._seq, order, started, dict(env))
        answer: dict[str, Any] = {"ok": True, "cause": cause}
        if cause != MODEM_STATUS:  # a status report is no part of a transition
            if len(self._pending) >= MAX_PENDING:
                dropped = self._pending.pop(0)
                log.warning("osmo-remsim: too many pending events; dropped %s", dropped.cause)
            self._pending.append(event)
            self._wake.set()
        notes = self._queue_pins(event)
        if notes:
            answer["rejected"] = notes
        log.debug("osmo-remsim: %s queued (%d pending)", cause, len(self._pending))
        return answer

    def _queue_pins(self, event: Event) -> list[str]:
        wanted = []
        if event.cause == CONFIG_BANKD:
            wanted.append(("bankd", "REMSIM_BANKD_ADDR", BANKD_PORT))
        if event.cause in (CONFIG_BANKD, SERVER_CONNECT):
            wanted.append(("server", "REMSIM_SERVER_ADDR", SERVER_PORT))
        notes = []
        for kind, variable, port in wanted:
            value = event.env.get(variable)
            try:
                peer = parse_hostport(value, port)
            except ValueError as exc:
                log.warning(
                    "osmo-remsim: %s %r rejected, %s not pinned: %s",
                    variable,
                    (value or "")[:80],
                    kind,
                    exc,
                )
                notes.append(f"{variable}: {exc}")
                continue
            if peer is None:
                if kind == "bankd":
                    log.info("osmo-remsim: no bankd assigned (%s %r)", variable, (value or "")[:80])
                continue
            try:
                self._pins.put_nowait((kind, format_hostport(*peer), event.order))
            except asyncio.QueueFull:
                log.warning("osmo-remsim: pin queue full; %s %s not pinned", kind, peer[0])
        return notes

    async def run(self) -> None:
        """The consumer: pins as they come, SIM switches and resets per batch."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pin_loop(), name="osmo-remsim pins")
            group.create_task(self._switch_loop(), name="osmo-remsim switch")

    async def _pin_loop(self) -> None:
        while True:
            kind, hostport, order = await self._pins.get()
            last = self._pinned.get(kind)
            if last is not None and order is not None and last[1] is not None and order < last[1]:
                log.debug("osmo-remsim: %s %s is older than the pinned %s", kind, hostport, last[0])
                continue
            if last is not None and last[0] == hostport:
                self._pinned[kind] = (hostport, order or last[1])
                continue
            try:
                await self._pin(kind, hostport)
            except Exception:
                log.exception("osmo-remsim: pinning %s %s failed", kind, hostport)
                continue
            self._pinned[kind] = (hostport, order)

    async def _switch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            # Events arriving while we sleep only move the due time later.
            while (delay := settle_due(self._pending, self.settle_s) - self._clock()) > 0:
                await self._sleep(delay)
            batch, self._pending = self._pending, []
            self._applying = True
            try:
                await self._apply(batch)
            except Exception:  # one bad batch must not end the consumer
                log.exception("osmo-remsim: applying %s failed", ", ".join(e.cause for e in batch))
            finally:
                self._applying = False

    async def _apply(self, batch: list[Event]) -> None:
        current = self._get_sim()
        decided = plan(batch, current, self._memory)
        if decided.idle:
            log.debug("osmo-remsim: %s: %s", ", ".join(decided.causes), decided.describe())
            remember(self._memory, decided, None)
            return
        switched = False
        if decided.switch and decided.side is not None:
            try:
                await self._set_sim(decided.side)
                switched = True
            except Exception:
                log.exception("osmo-remsim: selecting the %s SIM failed", side_name(decided.side))
        reset_at: float | None = None
        reset_ok: bool | None = None
        if switched or decided.requested_reset:
            reset_at = self._clock()
            reason = (
                f"osmo-remsim: {side_name(decided.side)} SIM selected"
                if switched
                else "osmo-remsim: modem reset requested"
            )
            try:
                reset_ok = bool(await self._reset_modem(reason))
            except Exception:
                log.exception("osmo-remsim: modem reset failed")
                reset_ok = False
        remember(self._memory, decided, reset_at)
        self._transitions.append(
            {
                "at": reset_at if reset_at is not None else self._clock(),
                "causes": list(decided.causes),
                "side": side_name(decided.side),
                "switched": switched,
                "reset": reset_at is not None,
                "reset_ok": reset_ok,
            }
        )
        log.info(
            "osmo-remsim: %s (%s)%s",
            decided.describe(),
            ", ".join(decided.causes),
            "" if reset_ok is not False else "; the reset did not succeed",
        )

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "sim": side_name(self._get_sim()),
            "settle_s": self.settle_s,
            "events": self._events,
            "pending": len(self._pending),
            "busy": self._applying or bool(self._pending),
            "pinned": {kind: hostport for kind, (hostport, _) in self._pinned.items()},
            "transitions": [
                {**{k: v for k, v in t.items() if k != "at"}, "age_s": round(now - t["at"], 1)}
                for t in self._transitions
            ],
        }
