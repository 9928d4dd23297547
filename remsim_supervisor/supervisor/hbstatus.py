"""The heartbeat's part of ``status``: typed snapshots in, the JSON the tools read out.

The ``heartbeat`` and ``routes`` objects of ``remsim-supervisor status``, the
status file, LuCI and rpcd read (docs/openwrt.md): their keys and shapes are
kept here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from remsim_supervisor.core.cadence import IdleLimit, ServerTrouble
from remsim_supervisor.supervisor.pathkeeper import MoveRecord, PathKeeper, RoutesSnapshot
from remsim_supervisor.supervisor.usage import WireUsage


@dataclass(frozen=True)
class ServerError:
    message: str
    count: int
    since_s: float


@dataclass(frozen=True)
class HeartbeatSnapshot:
    path: str | None
    interface: str | None
    interval_s: float
    registered: bool
    last_rtt_ms: float | None
    sent: int
    acked: int
    failed: int
    bytes_per_heartbeat: int | None
    bytes_total: int
    projected_bytes_30d: int | None
    last_error: str | None
    server_error: ServerError | None
    interval_bounds_s: tuple[float, float]
    idle_limit_s: dict[str, float]
    schedule_fault: str | None
    path_reason: str
    moves: tuple[MoveRecord, ...]


class Session(Protocol):
    """The heartbeat session as :func:`snapshot_of` reads it."""

    keeper: PathKeeper
    usage: WireUsage
    idle: IdleLimit
    server_trouble: ServerTrouble | None
    interval: float
    interval_bounds: tuple[float, float]
    registered: bool
    last_rtt_ms: float | None
    sent: int
    acked: int
    failed: int
    last_error: str | None
    schedule_fault: str | None

    def clock(self) -> float: ...


def snapshot_of(hb: Session) -> HeartbeatSnapshot:
    """The heartbeat session as ``status`` shows it, now."""
    now = hb.clock()
    keeper = hb.keeper
    active = keeper.facts.get(keeper.path.active) if keeper.path.active else None
    trouble = hb.server_trouble
    return HeartbeatSnapshot(
        path=keeper.path.active,
        interface=active.device if active else None,
        interval_s=hb.interval,
        registered=hb.registered,
        last_rtt_ms=hb.last_rtt_ms,
        sent=hb.sent,
        acked=hb.acked,
        failed=hb.failed,
        bytes_per_heartbeat=hb.usage.per_beat(),
        bytes_total=hb.usage.total,
        projected_bytes_30d=hb.usage.projected_30d(hb.interval),
        last_error=hb.last_error,
        server_error=(None if trouble is None else ServerError(
            trouble.message, trouble.count, round(max(0.0, now - trouble.since), 1))),
        interval_bounds_s=hb.interval_bounds,
        idle_limit_s=hb.idle.status(now),
        schedule_fault=hb.schedule_fault,
        path_reason=keeper.path.reason,
        moves=tuple(keeper.moves),
    )


def render(beat: HeartbeatSnapshot, routes: RoutesSnapshot) -> dict[str, Any]:
    error = beat.server_error
    return {
        "heartbeat": {
            "path": beat.path,
            "interface": beat.interface,
            "interval_s": beat.interval_s,
            "registered": beat.registered,
            "last_rtt_ms": beat.last_rtt_ms,
            "sent": beat.sent,
            "acked": beat.acked,
            "failed": beat.failed,
            "bytes_per_heartbeat": beat.bytes_per_heartbeat,
            "bytes_total": beat.bytes_total,
            "projected_bytes_30d": beat.projected_bytes_30d,
            "last_error": beat.last_error,
            "server_error": (
                None if error is None
                else {"message": error.message, "count": error.count, "since_s": error.since_s}
            ),
            "interval_bounds_s": list(beat.interval_bounds_s),
            "idle_limit_s": dict(beat.idle_limit_s),
            "schedule_fault": beat.schedule_fault,
            "path_reason": beat.path_reason,
            "moves": [m.as_dict() for m in beat.moves],
        },
        "routes": {
            "table": routes.table,
            "priority": routes.priority,
            "mark": f"{routes.mark:#x}",
            "pinned": list(routes.pinned),
            "rules": list(routes.rules),
            "routes": list(routes.routes),
        },
    }
