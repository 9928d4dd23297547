"""One modem as the status shows it: a typed snapshot, turned into JSON at the edge.

The modem task takes a :class:`ModemSnapshot` of its facts whenever someone
asks (``status --json``, the status file, ubus); :meth:`ModemSnapshot.as_status`
is the one place that lays it out as the status dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remsim_supervisor.core.machine import ModemFacts

__all__ = ["ModemSnapshot"]


@dataclass(frozen=True)
class ModemSnapshot:
    """What the status says about one modem, at one moment."""

    name: str
    role: str
    model: str           #: the profile key, else the configured model
    facts: ModemFacts
    since_s: float       #: seconds in the current state
    usb_path: str | None
    interface: str | None
    device: str | None   #: the Linux network device that carries its data
    at_dropped_bytes: int

    def as_status(self) -> dict[str, Any]:
        """The status dictionary, as ``status --json`` and the status file show it."""
        f = self.facts
        return {
            "name": self.name,
            "role": self.role,
            "model": self.model,
            "state": f.state,
            "reason": f.reason,
            "since_s": round(self.since_s, 1),
            "at_port": f.at_port,
            "usb_path": self.usb_path,
            "interface": self.interface,
            "device": self.device,
            "link": None if f.link_up is None else ("up" if f.link_up else "down"),
            "registration": f.registration_state,
            "access_tech": f.access_tech,
            "operator": f.operator,
            "signal": f.signal_dict,
            "sim": {"slot": None, "state": f.sim_lock},
            "at_dropped_bytes": self.at_dropped_bytes,
            "identity": {
                "manufacturer": f.manufacturer,
                "model": f.model_name,
                "revision": f.revision,
                "imei": f.imei,
                "imsi": f.imsi,
                "iccid": f.iccid,
            },
        }
