"""Prometheus metrics from the status snapshot, in the text exposition format.

The daemon writes them to a file (``supervisor.metrics_file``, by default
``/var/prometheus/remsim_supervisor.prom``) that the node exporter's textfile
collector reads: prometheus-node-exporter-lua on OpenWrt reads
``/var/prometheus/*.prom``, the Go node exporter a directory named by
``--collector.textfile.directory``. The file is replaced atomically, so a
scrape never sees half of it.

Names follow the node exporter's conventions: a ``remsim_`` prefix, base
units in the name (``_seconds``, ``_dbm``, ``_bytes``), ``_total`` on
counters, one-hot gauges for states. Labels carry modem names, states and
recovery steps only: never an IMEI, IMSI, ICCID or address.

:func:`render` is a pure function of the snapshot and the counts the
status watcher keeps (:mod:`remsim_supervisor.adapters.notify`).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from remsim_supervisor.core.machine import STATES

_Sample = tuple[Mapping[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _section(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _format(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[_Sample]) -> None:
        samples = list(samples)
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if labels:
                body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                self.lines.append(f"{name}{{{body}}} {_format(value)}")
            else:
                self.lines.append(f"{name} {_format(value)}")


def render(status: Mapping[str, Any],
           recovery_steps: Mapping[tuple[str, str, str], int] | None = None) -> str:
    """The metrics text for one status snapshot.

    ``recovery_steps`` counts finished recovery steps by (modem, step, result)
    since the daemon started.
    """
    out = _Writer()
    out.family("remsim_supervisor_info", "gauge", "The running remsim-supervisor.",
               [({"version": str(status.get("version", "unknown"))}, 1.0)])

    grace = _section(status.get("grace"))
    remaining = _number(grace.get("remaining_s"))
    out.family("remsim_grace_remaining_seconds", "gauge",
               "Seconds of the grace period left before IonMesh deactivates the remote SIM.",
               [({}, remaining)] if remaining is not None else [])
    period = _number(grace.get("period_s"))
    out.family("remsim_grace_period_seconds", "gauge", "The configured grace period.",
               [({}, period)] if period is not None else [])

    hb = _section(status.get("heartbeat"))
    for key, help_text in (("sent", "Heartbeats sent."),
                           ("acked", "Heartbeats IonMesh acknowledged."),
                           ("failed", "Heartbeats that failed.")):
        value = _number(hb.get(key))
        out.family(f"remsim_heartbeat_{key}_total", "counter", help_text,
                   [({}, value if value is not None else 0.0)])
    wire = _number(hb.get("bytes_total"))
    out.family("remsim_heartbeat_bytes_total", "counter",
               "Bytes on the wire (IP level) of all heartbeats sent.",
               [({}, wire if wire is not None else 0.0)])
    interval = _number(hb.get("interval_s"))
    out.family("remsim_heartbeat_interval_seconds", "gauge", "The heartbeat interval in use.",
               [({}, interval)] if interval is not None else [])

    modems_in = status.get("modems")
    modems = [m for m in modems_in if isinstance(m, Mapping)] if isinstance(modems_in, list) else []
    names = [str(m.get("name")) for m in modems]
    path = hb.get("path")
    out.family("remsim_heartbeat_path", "gauge",
               "1 for the modem the heartbeat leaves through, 0 for the others.",
               [({"modem": name}, 1.0 if name == path else 0.0) for name in names])
    out.family("remsim_modem_state", "gauge", "1 for the state each modem is in.",
               [({"modem": str(m.get("name")), "state": state},
                 1.0 if m.get("state") == state else 0.0)
                for m in modems for state in STATES])
    signal = []
    for m in modems:
        rsrp = _number(_section(m.get("signal")).get("rsrp_dbm"))
        if rsrp is not None:
            signal.append(({"modem": str(m.get("name"))}, rsrp))
    out.family("remsim_modem_signal_rsrp_dbm", "gauge",
               "Reference signal received power of each modem's serving cell.", signal)
    out.family("remsim_recovery_steps_total", "counter",
               "Recovery steps finished, by modem, step and result.",
               [({"modem": modem, "step": step, "result": result}, float(count))
                for (modem, step, result), count in sorted((recovery_steps or {}).items())])
    return "\n".join(out.lines) + "\n"


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: readers see the old or the new file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
