"""What can be done to a modem, and what is known of it now.

:class:`ModemActions` is the one way the guardian, the SIM switcher and the
control socket's ``reset`` reach a modem: they ask for a typed
:class:`ModemSnapshot` and call an action; none of them holds a modem task,
a GPIO line or the daemon. The daemon builds the one implementation
(:class:`remsim_supervisor.supervisor.modems.Modems`); tests give fakes.

Each rule is written once, in the implementation: the soft reset (the
vendor's AT reset), the reset pulse and its width
(:func:`remsim_supervisor.supervisor.lines.reset_pulse_ms`), and putting the
IoT modem back on its own SIM after every action that resets it.

:class:`Heartbeat` is the heartbeat as the guardian asks it: typed
:class:`BeatFacts` and four calls; :class:`HeartbeatView` gives it over the
daemon's heartbeat service.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from remsim_supervisor.core.at import Response
    from remsim_supervisor.supervisor.heartbeat import HeartbeatService

__all__ = ["BeatFacts", "Heartbeat", "HeartbeatView", "ModemActions", "ModemSnapshot"]


@dataclass(frozen=True)
class ModemSnapshot:
    """One modem as its owner task and its lines have it, now.

    ``capabilities`` are the planner's (``reset_gpio``, ``power_gpio``,
    ``usb``: a USB device that can be re-authorised); ``interface`` is the
    netifd interface to ``ifup``, if configured. ``at_port``: an AT channel
    is open. ``model``: the identified profile, else the configured model.
    """

    name: str
    role: str
    model: str
    state: str
    at_port: bool
    capabilities: frozenset[str]
    interface: str | None = None

    @property
    def on_network(self) -> bool:
        return self.state in ("registered", "connected")


class ModemActions(Protocol):
    """The modems, for those who act on them (see the module docstring)."""

    def snapshots(self) -> list[ModemSnapshot]:
        """Every configured modem, in configuration order."""
        ...

    def snapshot(self, name: str) -> ModemSnapshot | None:
        ...

    async def at(self, name: str, command: str, timeout: float | None = None) -> Response:
        """One AT command on the modem's port (PortError: none open; AtTimeout)."""
        ...

    async def radio_cycle(self, name: str) -> bool:
        ...

    async def soft_reset(self, name: str, reason: str) -> bool:
        ...

    async def reset_pulse(self, name: str, reason: str) -> bool:
        ...

    async def power_cycle(self, name: str, reason: str) -> bool:
        ...

    async def usb_reauth(self, name: str) -> bool:
        ...

    async def reset(self, name: str, reason: str) -> bool:
        """The reset line's pulse when there is one, else the soft reset."""
        ...

    def hold_local(self, name: str) -> bool:
        """The IoT modem back on its own SIM; True if the line was elsewhere."""
        ...

    async def reroute(self, name: str, reason: str) -> bool:
        """The heartbeat moved to ``name``'s path now (if it is usable)."""
        ...

    def recovery_started(self, name: str, rung: str) -> None:
        ...

    def recovery_ended(self, name: str, rung: str, ok: bool) -> None:
        ...


@dataclass(frozen=True)
class BeatFacts:
    """What the guardian plans against, from the heartbeat, now."""

    last_ack: float  # the last acknowledged heartbeat, else the heartbeat's start
    path: str | None  # the modem the heartbeat rides
    last_attempt_end: float
    in_flight_since: float | None
    interval: float
    schedule_fault: str | None
    grace_left_s: float


class Heartbeat(Protocol):
    """The heartbeat, as the guardian asks it."""

    def facts(self) -> BeatFacts: ...

    def modem_ok(self, name: str) -> bool: ...

    def acked_over_since(self, name: str, since: float) -> bool: ...

    def beat_now(self) -> None: ...

    def note_schedule_fault(self, reason: str | None) -> None: ...


class HeartbeatView:
    """:class:`Heartbeat` over the daemon's heartbeat service (its public surface)."""

    def __init__(self, service: HeartbeatService) -> None:
        self._service = service

    def facts(self) -> BeatFacts:
        hb = self._service
        return BeatFacts(
            last_ack=hb.last_ack if hb.last_ack is not None else hb.started,
            path=hb.path.active,
            last_attempt_end=hb.last_attempt_end,
            in_flight_since=hb.in_flight_since,
            interval=hb.interval,
            schedule_fault=hb.schedule_fault,
            grace_left_s=float(hb.grace()["remaining_s"]),
        )

    def modem_ok(self, name: str) -> bool:
        return self._service.modem_ok(name)

    def acked_over_since(self, name: str, since: float) -> bool:
        return self._service.acked_over_since(name, since)

    def beat_now(self) -> None:
        self._service.beat_now()

    def note_schedule_fault(self, reason: str | None) -> None:
        self._service.note_schedule_fault(reason)
