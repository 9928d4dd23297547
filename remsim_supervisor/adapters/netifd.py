"""What netifd knows about a logical interface: its layer-3 device.

A modem section names netifd's logical interface (``option interface
'wwan'``); the Linux device that carries its data and its routes is
netifd's ``l3_device`` (``wwan0``, or ``wwan_4``'s device with proto qmi,
``usb0`` for ECM/RNDIS, and for a dial-up modem (proto ``3g`` or ``ppp``) the
PPP unit pppd brings up, ``3g-wan`` or ``ppp-wan``, which exists only while
the session is up). The daemon learns it two ways:

* at start and on demand, from ``ubus call network.interface.NAME status``
  (when ``ubus`` exists: OpenWrt; elsewhere there is no netifd to ask; the
  lab hands its own, from ``REMSIM_SUPERVISOR_UBUS``);
* from the ``iface`` hotplug events the hook hands over, which carry
  ``INTERFACE`` and ``DEVICE`` whenever netifd brings an interface up.

``option device`` in the modem section always wins.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

UBUS_TIMEOUT_S = 3.0


def ubus_command(given: str | None = None) -> str | None:
    """The ubus to run: ``given`` (the environment's), else the one on PATH, else None."""
    return given or shutil.which("ubus")


def l3_device(interface: str, ubus: str | None) -> str | None:
    """netifd's layer-3 device of ``interface`` now, asked through the ``ubus``
    command, or None (down, unknown, no ubus)."""
    if not ubus or not interface:
        return None
    try:
        out = subprocess.run(
            [ubus, "call", f"network.interface.{interface}", "status"],
            capture_output=True, text=True, timeout=UBUS_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("ubus status of %s: %s", interface, exc)
        return None
    if out.returncode != 0:
        return None
    try:
        status = json.loads(out.stdout)
    except ValueError:
        log.warning("ubus gave an unreadable status for interface %s", interface)
        return None
    device = status.get("l3_device") or status.get("device") if isinstance(status, dict) else None
    # A tty path (``/dev/ttyUSB0``: a dial-up proto's port) is never a network device.
    return device if isinstance(device, str) and device and "/" not in device else None
