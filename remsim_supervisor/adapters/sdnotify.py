"""systemd's service notifications, spoken with the standard library alone.

Under a ``Type=notify`` unit systemd hands the service ``$NOTIFY_SOCKET``: an
``AF_UNIX`` datagram socket, a path or (starting with ``@``) a name in the
abstract namespace. The service sends newline-separated ``KEY=VALUE``
assignments there: ``READY=1`` once it serves, ``STATUS=...`` (one line
``systemctl status`` shows), ``RELOADING=1`` then ``READY=1`` around a
reload, ``STOPPING=1`` when it begins to stop, and ``WATCHDOG=1`` at least
once per ``$WATCHDOG_USEC``: a service that misses it is killed (SIGABRT)
and restarted by ``Restart=on-failure``.

:class:`SdNotify` is that socket. Without ``$NOTIFY_SOCKET`` (OpenWrt's
procd, a terminal) every call does nothing, so callers never ask. The
watchdog (:attr:`SdNotify.watchdog_s`) applies only to the process
``$WATCHDOG_PID`` names, when it names one; the daemon pings it from its
event loop (:mod:`remsim_supervisor.supervisor.hostservice`), so a loop stuck
in a blocking call misses it and systemd restarts the daemon. A send never
blocks and never raises: a notification that cannot be delivered is logged
once and dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SdNotify"]

log = logging.getLogger("remsim_supervisor.adapters.sdnotify")

MAX_STATUS = 200  # characters of a STATUS= line; systemctl shows one line


def _address(text: str) -> str | bytes | None:
    if text.startswith("@"):
        return b"\0" + text[1:].encode()  # the abstract namespace
    if text.startswith("/"):
        return text
    return None  # "vsock:..." and the like: not ours to speak


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between the pings systemd expects, or None when there is no watchdog for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is another process's
    return int(usec) / 1_000_000


class SdNotify:
    def __init__(self, address: str | bytes | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s if address is not None else None
        self.sent = 0
        self._sock: socket.socket | None = None
        self._failed = False
        self._status: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SdNotify:
        text = environ.get("NOTIFY_SOCKET", "")
        address = _address(text) if text else None
        if text and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket path or @name: no systemd "
                        "notifications", text)
        return cls(address, _watchdog_interval(environ))

    @property
    def active(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False when it did not go out."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notification not delivered (%s); dropping it and any "
                            "like it", exc)
                self._failed = True
            return False
        self._failed = False
        self.sent += 1
        return True

    def status(self, text: str) -> None:
        """The one line ``systemctl status`` shows; sent only when it changed."""
        line = " ".join(text.split())[:MAX_STATUS]
        if line != self._status and self.notify(f"STATUS={line}"):
            self._status = line

    def ready(self, status: str | None = None) -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets a newer systemd tie this to the reload it asked for.
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
