"""OpenWrt's own ubusd on a private socket, for the hooks' ubus lane outside the router sandbox.

:class:`Bus` starts ``ubusd -s SOCKET`` from the userland that
``scripts/build-openwrt.sh`` builds (``.venv/openwrt-userland``, or
``$OPENWRT_PREFIX``) in a directory of the caller's, and ends it when the
``with`` block ends, also on failure. :meth:`Bus.environment` is what the
daemon needs to listen on it (``REMSIM_SUPERVISOR_UBUS`` and ``_UBUS_SOCKET``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from remsim_lab.router import PREFIX

__all__ = ["UBUS", "UBUSD", "Bus", "missing"]

UBUSD = PREFIX / "sbin" / "ubusd"
UBUS = PREFIX / "bin" / "ubus"


def missing() -> list[str]:
    """The programs a :class:`Bus` needs and does not find."""
    return [str(p) for p in (UBUSD, UBUS) if not os.access(p, os.X_OK)]


class Bus:
    """``ubusd`` listening on ``directory/ubus.sock``."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "ubus.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Bus:
        self.process = subprocess.Popen([str(UBUSD), "-s", str(self.socket)],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"ubusd did not come up on {self.socket}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.socket.unlink(missing_ok=True)

    def environment(self) -> dict[str, str]:
        return {"REMSIM_SUPERVISOR_UBUS": str(UBUS),
                "REMSIM_SUPERVISOR_UBUS_SOCKET": str(self.socket)}

    def send(self, event: str, message: str) -> subprocess.CompletedProcess[str]:
        """``ubus send EVENT MESSAGE`` on this bus (the message as given, not checked)."""
        return subprocess.run([str(UBUS), "-s", str(self.socket), "send", event, message],
                              capture_output=True, text=True, timeout=10, check=False)
