"""What the heartbeat costs and tells: bytes on the wire, the data budget, the router's stats.

* :class:`WireUsage`: the bytes each acknowledged heartbeat put on the wire
  (the HTTP text the client counted, plus TCP/IP headers, plus a handshake
  when it had to connect), their total, and the projection over 30 days
  against ``supervisor.data_budget_mb``. The projection is the mean of the
  last :data:`~remsim_supervisor.core.cadence.INFO_EVERY` heartbeats: one
  whole round of the rule that sends ``stats`` with every 10th and
  ``modem_info`` with every 60th, so a steady router's projection is its
  long-run average, not a window that holds a ``modem_info`` one time in
  three.
* :func:`read_stats`: uptime from ``/proc``, the carrying modem's signal and
  data counters from ``/sys``, and its identity, for the heartbeat's
  ``stats`` and ``modem_info``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remsim_supervisor.core.cadence import INFO_EVERY
from remsim_supervisor.core.ionmesh import Exchange

log = logging.getLogger("remsim_supervisor.supervisor.heartbeat")

# Bytes a kept-alive HTTP exchange costs on the wire beyond the HTTP text:
# three segments (request, response, ACK), each 20 bytes of IPv4 and 32 of TCP
# with timestamps; a new connection adds its handshake and the close of the
# previous one (measured over plain HTTP: docs/heartbeat-bytes.md).
TCP_IP_OVERHEAD = 3 * 52
NEW_CONNECTION_OVERHEAD = 380
MONTH_S = 30 * 86400
BUDGET_SAMPLE = 5  # heartbeats measured before the budget is judged


@dataclass(frozen=True)
class ModemView:
    """What the heartbeat needs to know of a modem, from its owner task."""

    name: str
    role: str
    device: str | None
    model: str | None
    status: Mapping[str, Any]


def wire_bytes(exchange: Exchange) -> int:
    """The bytes one exchange cost on the wire."""
    wire = exchange.bytes_sent + exchange.bytes_received + TCP_IP_OVERHEAD
    if exchange.new_connection:
        wire += NEW_CONNECTION_OVERHEAD
    return wire


class WireUsage:
    """The last heartbeats' bytes (one round of the cadence rule), the total since
    the start, and the budget warning."""

    def __init__(self, budget_mb: float | None = None) -> None:
        self.budget_mb = budget_mb
        self.recent: deque[int] = deque(maxlen=INFO_EVERY)
        self.total = 0
        self.budget_warned = False
        # told after each acknowledged heartbeat is recorded (the status publisher)
        self.on_record: Callable[[], None] | None = None

    def record(self, exchange: Exchange, interval: float) -> int:
        """One acknowledged heartbeat's exchange; warns once when the budget is overrun."""
        wire = wire_bytes(exchange)
        self.recent.append(wire)
        self.total += wire
        budget = self.budget_mb
        if budget and not self.budget_warned and len(self.recent) >= BUDGET_SAMPLE:
            projected = sum(self.recent) / len(self.recent) * MONTH_S / interval
            if projected > budget * 1e6:
                self.budget_warned = True
                log.warning(
                    "heartbeats alone project to %.1f MB in 30 days, over the %.0f MB "
                    "data budget of the IoT SIM",
                    projected / 1e6,
                    budget,
                )
        if self.on_record is not None:
            self.on_record()
        return wire

    def per_beat(self) -> int | None:
        return round(sum(self.recent) / len(self.recent)) if self.recent else None

    def projected_30d(self, interval: float) -> int | None:
        per_beat = self.per_beat()
        return round(per_beat * MONTH_S / interval) if per_beat else None


def read_stats(views: Iterable[ModemView], active: str | None, *,
               proc: str = "/proc", sys_net: str = "/sys/class/net",
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``stats``, ``modem_info``) for a heartbeat: of the modem carrying it
    (``active``), else of the IoT modem."""
    stats: dict[str, Any] = {}
    try:
        stats["uptime_seconds"] = int(float(Path(proc, "uptime").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    by_name = {v.name: v for v in views}
    carrier = by_name.get(active or "") or next(
        (v for v in by_name.values() if v.role == "iot"), None
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
                        Path(sys_net, carrier.device, "statistics", name).read_text()
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
