"""The human form of ``remsim-supervisor status``: the JSON status on one screen.

Identities (IMEI, IMSI, ICCID) are masked as in the logs, in the JSON form
too (:func:`mask_identifiers`): status output gets pasted into tickets. The
daemon answers with them in full over its root-only socket; ``status
--show-identifiers`` prints them so.
"""

from __future__ import annotations

from typing import Any

from remsim_supervisor.core.masking import mask

#: Keys whose values are identities, wherever they appear in the status.
IDENTIFIER_KEYS = frozenset({"imei", "imsi", "iccid"})


def mask_identifiers(value: Any) -> Any:
    """A copy of ``value`` with every identity masked to its last four characters."""
    if isinstance(value, dict):
        return {k: (mask(v) if v is not None and str(k).lower() in IDENTIFIER_KEYS
                    else mask_identifiers(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_identifiers(v) for v in value]
    return value


def _signal(signal: dict[str, Any]) -> str:
    if not signal:
        return "-"
    order = ("rssi_dbm", "rsrp_dbm", "rsrq_db", "sinr_db", "rscp_dbm", "ecio_db")
    parts = []
    for key in order + tuple(sorted(k for k in signal if k not in order)):
        if key in signal and key != "mode":
            unit = "dBm" if key.endswith("_dbm") else "dB"
            name = key.rsplit("_", 1)[0].upper()
            parts.append(
                f"{name} {signal[key]:g} {unit}"
                if isinstance(signal[key], (int, float))
                else f"{name} {signal[key]}"
            )
    return ", ".join(parts) or "-"


def _lan(lan: dict[str, Any]) -> list[str]:
    """The LAN failover's line(s); none when the policy is off."""
    if not lan.get("enabled"):
        return []
    if lan.get("state") == "left to mwan3":
        return [f"lan       left to mwan3 ({lan.get('mwan3')})"]
    active = lan.get("active")
    head = (f"lan       via {active} ({lan.get('device') or '-'}): {lan.get('reason')}"
            if active else f"lan       main table: {lan.get('reason')}")
    lines = [head]
    if lan.get("failback_to"):
        lines.append(f"          failback to {lan['failback_to']} in "
                     f"{lan.get('failback_in_s')} s")
    for u in lan.get("uplinks", []):
        cap = (f"; {u.get('used_today_mb')} of {u.get('cap_mb')} MB today"
               if u.get("cap_mb") else "")
        lines.append(f"          {u.get('name')}: {u.get('problem') or 'usable'}{cap}")
    return lines


def render(status: dict[str, Any]) -> str:
    lines = [
        f"remsim-supervisor {status.get('version', '?')}, pid {status.get('pid', '?')}, "
        f"up {status.get('uptime_s', 0):.0f} s"
    ]
    grace = status.get("grace")
    if grace:
        remaining = grace.get("remaining_s")
        age = grace.get("last_ack_age_s")
        lines.append(
            f"grace     {remaining if remaining is not None else '-'} s left of "
            f"{grace.get('period_s')} s; last acknowledged heartbeat "
            f"{'never' if age is None else f'{age:.0f} s ago'}"
        )
        if grace.get("at_risk"):
            lines.append(f"          AT RISK: {grace['at_risk']}")
    hb = status.get("heartbeat")
    if hb:
        per = hb.get("bytes_per_heartbeat")
        month = hb.get("projected_bytes_30d")
        lines.append(
            f"heartbeat via {hb.get('path') or 'no path'} ({hb.get('interface') or '-'}), every "
            f"{hb.get('interval_s', 0):.0f} s; sent {hb.get('sent', 0)}, acked "
            f"{hb.get('acked', 0)}, failed {hb.get('failed', 0)}; last RTT "
            f"{hb.get('last_rtt_ms') if hb.get('last_rtt_ms') is not None else '-'} ms; "
            f"{per if per else '-'} B each, {f'{month / 1e6:.1f} MB' if month else '-'} per 30 days"
        )
        if hb.get("last_error"):
            lines.append(f"          last error: {hb['last_error']}")
        trouble = hb.get("server_error")
        if trouble:
            lines.append(
                f"          IonMesh not acknowledging: {trouble.get('count')} in a row for "
                f"{trouble.get('since_s')} s (the path works and stays)"
            )
        if hb.get("schedule_fault"):
            lines.append(f"          behind schedule: {hb['schedule_fault']}")
    routes = status.get("routes")
    if routes:
        pinned = ", ".join(
            f"{p.get('host')}={p.get('address')}"
            if p.get("host") != p.get("address")
            else str(p.get("address"))
            for p in routes.get("pinned", [])
        )
        lines.append(
            f"routes    table {routes.get('table')}, pref {routes.get('priority')}: "
            f"{pinned or 'nothing pinned'}"
        )
    lines.extend(_lan(status.get("lan") or {}))
    lines.append("")
    lines.append(
        f"{'modem':<10} {'role':<8} {'model':<8} {'state':<11} {'reg':<9} "
        f"{'tech':<6} {'operator':<14} {'SIM':<12} port"
    )
    for m in status.get("modems", []):
        sim = (m.get("sim") or {}).get("state") or "-"
        lines.append(
            f"{m.get('name', '?'):<10} {m.get('role', '?'):<8} {m.get('model') or '-'!s:<8} "
            f"{m.get('state', '?'):<11} {m.get('registration') or '-'!s:<9} "
            f"{m.get('access_tech') or '-'!s:<6} {str(m.get('operator') or '-')[:14]:<14} "
            f"{sim:<12} {m.get('at_port') or '-'}"
        )
        lines.append(
            f"{'':<10} signal: {_signal(m.get('signal') or {})}; "
            f"data {m.get('device') or '-'} {m.get('link') or '-'}; {m.get('reason', '')}"
        )
        identity = m.get("identity") or {}
        ids = [f"{label} {identity[key]}" for key, label in
               (("imei", "IMEI"), ("imsi", "IMSI"), ("iccid", "ICCID")) if identity.get(key)]
        if ids:
            lines.append(f"{'':<10} {', '.join(ids)}")
        if m.get("at_port_reason"):
            what = "AT ports held" if m.get("at_ports_held") else "AT port not the main one"
            lines.append(f"{'':<10} {what}: {m['at_port_reason']}")
        if m.get("at_dropped_bytes"):
            lines.append(f"{'':<10} AT port flooding: {m['at_dropped_bytes']} bytes dropped")
    recoveries = status.get("recoveries") or []
    if recoveries:
        lines.append("")
        lines.append("recent recovery steps:")
        for r in recoveries[:5]:
            lines.append(
                f"  {r.get('modem')}: {r.get('step')} -> {r.get('result')} "
                f"({r.get('grace_left_s')} s of grace left at start)"
            )
    return "\n".join(lines)
