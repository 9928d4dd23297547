"""USB and tty device events in-process, through pyudev, where udev exists.

On OpenWrt the hotplug hooks (``/etc/hotplug.d/usb/``) hand a USB event to
the daemon over its control socket. A generic Linux host has udev instead:
:class:`UeventMonitor` listens to the kernel's device events itself, with
pyudev (an optional dependency, the package's ``udev`` extra), and hands
each one to the same handler the hooks feed. It reads on the event loop
(``loop.add_reader`` on the monitor's socket): no thread, no polling.

What is passed on: a whole USB device (``DEVTYPE=usb_device``, not each of
its interfaces) added, removed, bound or unbound (a modem appearing,
vanishing, coming back from a reset, de- and re-authorised), and a tty added
or removed (the modem's AT port: the kernel announces the USB device before
its serial ports exist, so discovery looks again when the port appears).

The source (``supervisor.usb_monitor``):

* ``udev``: events after udev's rules ran (the device nodes exist);
* ``kernel``: the kernel's own events, also where no udev daemon runs;
* ``auto`` (the default): ``udev`` where a udev daemon runs
  (``/run/udev/control`` exists) and pyudev and libudev load; off elsewhere,
  which is OpenWrt (no udev there: its hotplug hooks stay the way);
* ``off``: none.

A burst is read at most :data:`BATCH` events per turn of the loop, so a
storm of events never starves the modems or the control socket; a receive
error (the socket's buffer overrun in a storm) is logged, rate-limited, and
survived: the modem tasks re-scan on their own schedule anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from remsim_supervisor.log import Budget

__all__ = ["ACTIONS", "SOURCES", "UeventMonitor", "choose_source"]

log = logging.getLogger("remsim_supervisor.adapters.udevmon")

SOURCES = ("auto", "udev", "kernel", "off")
UDEV_CONTROL = "/run/udev/control"  # present while a udev daemon runs
BATCH = 64  # events read per turn of the event loop
#: The actions passed on, by subsystem.
ACTIONS = {"usb": ("add", "remove", "bind", "unbind"), "tty": ("add", "remove")}
#: The event's properties handed on (the hotplug hooks' variables).
KEYS = ("ACTION", "DEVPATH", "DEVTYPE", "DEVNAME", "PRODUCT", "TYPE", "SUBSYSTEM",
        "BUSNUM", "DEVNUM", "SEQNUM")

Handler = Callable[[str, dict[str, str]], None]


def choose_source(setting: str, udev_control: str = UDEV_CONTROL) -> tuple[str | None, str]:
    """The netlink source to listen to for ``setting``, or None, and why (for the log)."""
    if setting == "off":
        return None, "supervisor.usb_monitor is off"
    # Where no udev daemon runs (OpenWrt) pyudev is not even imported: it costs memory.
    if setting == "auto" and not os.path.exists(udev_control):
        return None, f"no udev daemon runs ({udev_control} is absent)"
    try:
        import pyudev  # noqa: F401 (only whether it imports)
    except ImportError:
        return None, "pyudev is not installed (the hotplug hooks hand USB events over)"
    if setting == "auto":
        return "udev", "a udev daemon runs"
    return setting, f"supervisor.usb_monitor is {setting}"


class UeventMonitor:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.setting: str | None = None  # as last applied
        self.source: str | None = None
        self.received = 0
        self.passed = 0
        self.errors = 0
        self.last: dict[str, str] | None = None
        self._monitor: Any = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._budget = Budget(3, 60.0)

    def start(self, setting: str) -> bool:
        """Listen as ``setting`` asks (stopping a monitor of another source first);
        False, with one log line saying why, when there is no monitor."""
        if setting == self.setting:
            return self._monitor is not None  # as it was: nothing to do, nothing to say
        source, why = choose_source(setting)
        self.stop()
        self.setting = setting
        if source is None:
            # asked for by name: worth a warning; "auto" finding no udev (OpenWrt) is normal
            level = logging.WARNING if setting in ("udev", "kernel") else logging.DEBUG
            log.log(level, "no in-process USB monitor: %s", why)
            return False
        try:
            import pyudev

            context = pyudev.Context()
            monitor = pyudev.Monitor.from_netlink(context, source=source)
            monitor.filter_by("usb", "usb_device")
            monitor.filter_by("tty")
            monitor.start()
            loop = asyncio.get_running_loop()
            fd = monitor.fileno()
            loop.add_reader(fd, self._readable)
        except (ImportError, OSError, ValueError) as exc:
            log.warning("no in-process USB monitor (%s source): %s", source, exc)
            return False
        self._monitor, self._fd, self._loop, self.source = monitor, fd, loop, source
        log.info("USB events from the %s monitor (%s)", source, why)
        return True

    def stop(self) -> None:
        if self._loop is not None and self._fd is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._monitor = self._fd = self._loop = None
        self.source = self.setting = None

    def _readable(self) -> None:
        for _ in range(BATCH):
            try:
                device = self._monitor.poll(timeout=0) if self._monitor is not None else None
            except OSError as exc:
                self.errors += 1
                if self._budget.take() is not None:
                    log.warning("USB monitor: %s (events may have been lost; the modems "
                                "are looked for again on their own schedule)", exc)
                return
            if device is None:
                return
            self.received += 1
            self._deliver(device)

    def _deliver(self, device: Any) -> None:
        try:
            props = device.properties
            env = {key: str(props[key]) for key in KEYS if key in props}
        except (KeyError, OSError, UnicodeDecodeError) as exc:  # garbled: logged, survived
            self.errors += 1
            if self._budget.take() is not None:
                log.warning("USB monitor: unreadable event (%s)", exc)
            return
        subsystem = env.get("SUBSYSTEM", "")
        if env.get("ACTION") not in ACTIONS.get(subsystem, ()):
            return
        if subsystem == "usb" and env.get("DEVTYPE") != "usb_device":
            return
        self.passed += 1
        self.last = {k: env[k] for k in ("ACTION", "SUBSYSTEM", "DEVPATH", "SEQNUM") if k in env}
        log.debug("uevent %s %s %s (seq %s)", subsystem, env.get("ACTION"),
                  env.get("DEVPATH"), env.get("SEQNUM", "?"))
        try:
            self.handler(subsystem, env)
        except Exception:  # a bug in the handler: logged, and the monitor goes on
            log.exception("USB monitor: the handler failed on %s %s", subsystem,
                          env.get("DEVPATH"))

    def status(self) -> dict[str, Any]:
        return {"source": self.source, "received": self.received, "passed": self.passed,
                "errors": self.errors, "last": self.last}
