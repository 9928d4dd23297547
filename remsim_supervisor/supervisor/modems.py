"""The daemon's modems: each one's owner task and GPIO lines, and what can be done to them.

:class:`Modems` holds, per configured modem, its
:class:`~remsim_supervisor.supervisor.modem.ModemRunner` and its
:class:`~remsim_supervisor.supervisor.lines.ModemLines`, and is the one
implementation of :class:`~remsim_supervisor.supervisor.actions.ModemActions`:

* ``soft_reset``: the vendor's AT reset; ``reset_pulse``: the reset line for
  :func:`~remsim_supervisor.supervisor.lines.reset_pulse_ms`; ``reset``: the
  pulse when there is a reset line, else the soft reset; ``power_cycle``:
  the power line off for :data:`POWER_OFF_MS`; ``radio_cycle``: ``AT+CFUN``
  off and on; ``usb_reauth``: sysfs ``authorized`` 0 then 1 (a root-hub port
  is never disabled);
* after each of them that resets the IoT modem, its SIM line is put back on
  its local SIM (:meth:`Modems.hold_local`);
* ``reroute`` is the heartbeat's, handed in.

A change of a modem's state is reported to ``on_change`` (the guardian wakes
on it): :class:`WatchedRunner` is the owner task that says so. A modem whose
every AT port other programs hold is offered to the guardian with no
capability and no interface: it takes no step on it (``atports.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from remsim_supervisor.adapters.gpio import power_cycle, pulse
from remsim_supervisor.adapters.serialport import AtTimeout, PortError
from remsim_supervisor.core import machine as m
from remsim_supervisor.core.at import Response
from remsim_supervisor.supervisor.actions import ModemSnapshot
from remsim_supervisor.supervisor.lines import (
    ModemLines,
    hold_local,
    is_remote,
    reset_pulse_ms,
    sim_level,
)
from remsim_supervisor.supervisor.modem import ModemRunner

__all__ = ["POWER_OFF_MS", "Modems", "WatchedRunner"]

log = logging.getLogger("remsim_supervisor.supervisor.modems")

POWER_OFF_MS = 2000
RADIO_OFF_S = 2.0  # between AT+CFUN off and on
USB_OFF_S = 1.0  # between authorized 0 and 1

Reroute = Callable[[str, str], Awaitable[bool]]


class WatchedRunner(ModemRunner):
    """A modem's owner task that reports each change of its state to ``on_change``."""

    on_change: Callable[[], None] | None = None

    def apply(self, event: m.Event) -> None:
        before = self.facts.state
        super().apply(event)
        if self.facts.state != before and self.on_change is not None:
            self.on_change()


class Modems:
    def __init__(self, reroute: Reroute, on_change: Callable[[], None] | None = None) -> None:
        self._reroute = reroute
        self.on_change = on_change
        self.runners: dict[str, ModemRunner] = {}
        self.lines: dict[str, ModemLines] = {}

    # -- the table --------------------------------------------------------------

    def put(self, runner: ModemRunner, lines: ModemLines) -> None:
        """``runner`` and ``lines`` for ``runner.name`` from now on (old lines released)."""
        old = self.lines.get(runner.name)
        if old is not None and old is not lines:
            old.release()
        if isinstance(runner, WatchedRunner):
            runner.on_change = self._changed
        self.runners[runner.name] = runner
        self.lines[runner.name] = lines

    def drop(self, name: str) -> None:
        self.runners.pop(name, None)
        lines = self.lines.pop(name, None)
        if lines is not None:
            lines.release()

    def release_all(self) -> None:
        for lines in self.lines.values():
            lines.release()
        self.lines.clear()

    def names(self) -> list[str]:
        return list(self.runners)

    def runner(self, name: str) -> ModemRunner | None:
        return self.runners.get(name)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    # -- what is known -------------------------------------------------------------

    def snapshots(self) -> list[ModemSnapshot]:
        return [s for name in self.runners if (s := self.snapshot(name)) is not None]

    def snapshot(self, name: str) -> ModemSnapshot | None:
        runner = self.runners.get(name)
        if runner is None:
            return None
        caps = set(self.lines[name].capabilities) if name in self.lines else set()
        if self._authorized_file(runner) is not None:
            caps.add("usb")
        held = runner.ports.all_held and runner.channel is None
        return ModemSnapshot(
            name=name,
            role=runner.cfg.role,
            model=runner.facts.profile or runner.cfg.model,
            state=runner.facts.state,
            at_port=runner.channel is not None,
            # Every AT port held by other programs (smsd, pppd): they work the
            # modem, so no reset is offered on it, nor an ifup that would cut
            # a session whose link is up (a link that is down has no session
            # to cut: ifup restarts it, pppd redials).
            capabilities=frozenset() if held else frozenset(caps),
            interface=(None if held and runner.facts.link_up is not False
                       else runner.cfg.interface),
        )

    def sim_remote(self, name: str) -> bool | None:
        """Whether ``name``'s SIM line selects the remote SIM (None: no line, unknown)."""
        runner, lines = self.runners.get(name), self.lines.get(name)
        if runner is None or lines is None or lines.sim is None:
            return None
        try:
            return is_remote(runner.cfg, lines.sim.get())
        except Exception:
            return None

    async def set_sim(self, name: str, remote: bool) -> bool:
        runner, lines = self.runners.get(name), self.lines.get(name)
        side = "remote" if remote else "local"
        if runner is None or lines is None or lines.sim is None:
            log.warning("no SIM line to switch to the %s SIM (%s has no sim_gpio)", side,
                        name or "no primary modem")
            return False
        lines.sim.set(sim_level(runner.cfg, remote))
        log.info("%s (%s): SIM line %s -> %s SIM", name, runner.cfg.role, runner.cfg.sim_gpio,
                 side)
        return True

    # -- actions ---------------------------------------------------------------------

    async def at(self, name: str, command: str, timeout: float | None = None) -> Response:
        runner = self._runner(name)
        return await runner.at(command, timeout)

    async def radio_cycle(self, name: str) -> bool:
        runner = self._runner(name)
        profile = runner.profile
        if profile is None:
            return False
        try:
            off = await runner.at(profile.radio_off, profile.timings.radio_cycle_s)
            await asyncio.sleep(RADIO_OFF_S)
            on = await runner.at(profile.radio_on, profile.timings.radio_cycle_s)
        except (AtTimeout, PortError, ValueError) as exc:
            log.warning("%s: radio_cycle: %s", name, exc)
            return False
        return off.ok and on.ok

    async def soft_reset(self, name: str, reason: str) -> bool:
        runner = self._runner(name)
        profile = runner.profile
        if runner.channel is None or profile is None:
            log.error("%s (%s): cannot soft reset (%s): no AT port", name, runner.cfg.role, reason)
            return False
        log.info("%s (%s): soft reset %s: %s", name, runner.cfg.role, profile.soft_reset, reason)
        try:
            response = await runner.at(profile.soft_reset, profile.timings.soft_reset_answer_s)
            ok = response.ok
        except (AtTimeout, PortError, ValueError) as exc:
            log.warning("%s (%s): soft reset failed: %s", name, runner.cfg.role, exc)
            ok = False
        self.hold_local(name)
        return ok

    async def reset_pulse(self, name: str, reason: str) -> bool:
        runner = self._runner(name)
        lines = self.lines.get(name)
        if lines is None or lines.reset is None:
            return False
        cfg = runner.cfg
        width = reset_pulse_ms(cfg, runner.profile)
        log.info("%s (%s): reset pulse %d ms on %s: %s", name, cfg.role, width, cfg.reset_gpio,
                 reason)
        await pulse(lines.reset, width)
        self.hold_local(name)
        return True

    async def power_cycle(self, name: str, reason: str) -> bool:
        runner = self._runner(name)
        lines = self.lines.get(name)
        if lines is None or lines.power is None:
            return False
        log.info("%s (%s): power cycle %d ms on %s: %s", name, runner.cfg.role, POWER_OFF_MS,
                 runner.cfg.power_gpio, reason)
        await power_cycle(lines.power, POWER_OFF_MS)
        self.hold_local(name)
        return True

    async def usb_reauth(self, name: str) -> bool:
        path = self._authorized_file(self._runner(name))
        if path is None:
            return False
        try:
            # Re-authorising the device makes the kernel re-enumerate it, which
            # revives a modem whose AT/QMI services stopped answering. Never a
            # root-hub port: that can leave the bus unable to enumerate.
            path.write_text("0")
            await asyncio.sleep(USB_OFF_S)
            path.write_text("1")
        except OSError as exc:
            log.warning("%s: USB re-authorisation through %s failed: %s", name, path, exc)
            return False
        return True

    async def reset(self, name: str, reason: str) -> bool:
        runner = self.runners.get(name)
        if runner is None:
            log.error("cannot reset %r: no such modem (%s)", name, reason)
            return False
        lines = self.lines.get(name)
        if lines is not None and lines.reset is not None:
            return await self.reset_pulse(name, reason)
        if runner.channel is not None and runner.profile is not None:
            return await self.soft_reset(name, reason)
        log.error("%s (%s): cannot reset (%s): no reset_gpio and no AT port", name,
                  runner.cfg.role, reason)
        return False

    def hold_local(self, name: str) -> bool:
        runner, lines = self.runners.get(name), self.lines.get(name)
        if runner is None or runner.cfg.role != "iot" or lines is None or lines.sim is None:
            return False
        return hold_local(runner.cfg, lines.sim)

    async def reroute(self, name: str, reason: str) -> bool:
        return await self._reroute(name, reason)

    def recovery_started(self, name: str, rung: str) -> None:
        runner = self.runners.get(name)
        if runner is not None:
            runner.apply(m.RecoveryStarted(rung))

    def recovery_ended(self, name: str, rung: str, ok: bool) -> None:
        runner = self.runners.get(name)
        if runner is not None and runner.facts.recovering is not None:
            runner.apply(m.RecoveryEnded(rung, ok))

    # -- inside ----------------------------------------------------------------------

    def _runner(self, name: str) -> ModemRunner:
        runner = self.runners.get(name)
        if runner is None:
            raise PortError(f"no modem named {name!r}")
        return runner

    @staticmethod
    def _authorized_file(runner: ModemRunner) -> Path | None:
        found = runner.found
        if found is None or not found.sysfs_device:
            return None
        path = Path(found.sysfs_device) / "authorized"
        return path if path.exists() else None

