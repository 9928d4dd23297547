"""The daemon on a generic Linux host: systemd's notifications and the USB monitor.

Under systemd (``Type=notify``, ``files/etc/systemd/system/``) the daemon
tells the service manager where it is, through
:class:`~remsim_supervisor.adapters.sdnotify.SdNotify`:

* ``READY=1`` once the control socket answers and the modem tasks and the
  heartbeat have started (their first turn of the event loop is done);
* ``STATUS=`` a one-line summary (the heartbeat's path, the grace left, each
  modem's state), sent when it changes, looked at every :data:`STATUS_EVERY_S`;
* ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC``, from the event loop: a
  wedged loop misses it and systemd restarts the daemon;
* ``RELOADING=1`` ... ``READY=1`` around every reload (SIGHUP, the control
  socket's ``reload``), also one that kept the old configuration;
* ``STOPPING=1`` when an orderly stop begins.

Without ``$NOTIFY_SOCKET`` (OpenWrt's procd) none of it runs: :meth:`run`
returns at once.

The USB monitor (:class:`~remsim_supervisor.adapters.udevmon.UeventMonitor`)
is started as ``supervisor.usb_monitor`` says, again on a reload that
changes it, and hands its events to the daemon's hotplug handler, the one
the OpenWrt hotplug hooks reach over the control socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from remsim_supervisor.adapters.sdnotify import SdNotify
from remsim_supervisor.adapters.udevmon import Handler, UeventMonitor
from remsim_supervisor.config import Config

__all__ = ["STATUS_EVERY_S", "HostService", "summary"]

log = logging.getLogger("remsim_supervisor.supervisor.hostservice")

STATUS_EVERY_S = 5.0
MIN_TICK_S = 0.05


def summary(status: Mapping[str, Any]) -> str:
    """The ``STATUS=`` line: path, grace left, modems."""
    beat = status.get("heartbeat") or {}
    grace = status.get("grace") or {}
    path = beat.get("path") or "no path"
    left = grace.get("remaining_s")
    modems = ", ".join(f"{m.get('name')} {m.get('state')}" for m in status.get("modems") or [])
    grace_text = f"{left:.0f} s of grace left" if isinstance(left, int | float) else "grace ?"
    return f"heartbeat via {path}, {grace_text}; {modems or 'no modems'}"


class HostService:
    def __init__(self, environ: Mapping[str, str], on_uevent: Handler,
                 status: Callable[[], Mapping[str, Any]]) -> None:
        self.notify = SdNotify.from_environ(environ)
        self.uevents = UeventMonitor(on_uevent)
        self._status = status

    def start(self, config: Config) -> None:
        """At start, in the event loop: the USB monitor, as configured."""
        self.notify.status("starting")
        self.uevents.start(config.supervisor.usb_monitor)

    async def run(self) -> None:
        """READY=1, then the watchdog and the STATUS= line until cancelled."""
        if not self.notify.active:
            return
        self.notify.ready(self._summary())
        loop = asyncio.get_running_loop()
        watchdog = self.notify.watchdog_s
        # (never a busy loop, whatever WatchdogSec says)
        tick = max(MIN_TICK_S, min(watchdog / 2, STATUS_EVERY_S)) if watchdog else STATUS_EVERY_S
        if watchdog:
            log.info("systemd watchdog: %g s, pinged every %g s", watchdog, tick)
        next_status = loop.time() + STATUS_EVERY_S
        while True:
            if watchdog:
                self.notify.notify("WATCHDOG=1")
            if loop.time() >= next_status:
                self.notify.status(self._summary())
                next_status = loop.time() + STATUS_EVERY_S
            await asyncio.sleep(tick)

    def _summary(self) -> str:
        try:
            return summary(self._status())
        except Exception:  # a status bug must not stop the watchdog
            log.exception("status summary failed")
            return "running"

    def reloading(self) -> None:
        self.notify.reloading()

    def reloaded(self, config: Config) -> None:
        """After a reload, applied or refused: the monitor as configured, and READY=1."""
        self.uevents.start(config.supervisor.usb_monitor)
        self.notify.ready()

    def stopping(self) -> None:
        self.notify.stopping()

    def close(self) -> None:
        self.uevents.stop()
        self.notify.close()

    def uevent_status(self) -> dict[str, Any]:
        return self.uevents.status()
