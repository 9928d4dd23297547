"""When the next heartbeat goes out, and over which connection: pure rules.

No I/O and no clock: times come in as arguments, so a test plays a day of
heartbeats in a millisecond. :mod:`remsim_supervisor.supervisor.heartbeat` feeds these
rules and carries out what they say.

* :func:`clamp_interval`: a number from the server is never trusted. The
  interval it asks for is held inside [``min_heartbeat_interval``,
  ``grace_period - margin - timeout``]: a heartbeat that takes its whole
  timeout is still acknowledged ``margin`` before the deadline, and a server
  asking for one a second cannot spend the IoT plan. When the bounds cross
  (a short grace with a long minimum), the upper one wins: the SIM first.
* :class:`ServerTrouble`: IonMesh answered, but not with an acknowledgement
  (5xx, a redirect, a 404 that registering again did not cure, an answer
  that is no JSON, too large or too slow). The path works, so the heartbeat
  stays on it; it is retried sooner than an interval (a quarter of it at
  first, doubling, never later than the interval), and what the server said,
  how often and since when is kept for ``status``.
* :class:`IdleLimit`: carriers forget idle TCP flows (NAT and firewall
  state) after a few minutes, often before the next heartbeat. A kept-alive
  connection found dead after ``idle`` seconds, while a fresh one over the
  same path then worked, teaches that the carrier forgets flows after at
  most ``idle`` seconds; from then on a heartbeat after longer idleness
  (less a fifth, for the carrier's coarse timers) starts on a fresh
  connection. What was learned is forgotten after :data:`RELEARN_S`, so a
  carrier that changed its timers, or one unlucky loss, does not cost a
  fresh connection per heartbeat for ever.
* :func:`schedule_fault`: the heartbeat's own schedule, watched from outside
  (the guardian): no attempt for longer than interval + timeout is a fault
  of its own, whatever the modems' health.
* :func:`command_summary`: ``commands`` from the server as one bounded line.
* :func:`report`: which heartbeats carry ``stats`` and ``modem_info`` (news,
  or every 10th and 60th), so an average heartbeat costs close to the
  HTTP/TCP floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "FORGET_SLACK",
    "RELEARN_S",
    "SHOWN_COMMANDS",
    "IdleLimit",
    "Reported",
    "ServerTrouble",
    "clamp_interval",
    "command_summary",
    "interval_bounds",
    "report",
    "reported",
    "schedule_fault",
]

RELEARN_S = 6 * 3600.0
FORGET_SLACK = 0.8  # go fresh from this fraction of the idle time a flow was found forgotten
SHOWN_COMMANDS = 3
MIN_RETRY_S = 1.0


def interval_bounds(min_interval: float, grace_s: float, margin_s: float,
                    timeout_s: float) -> tuple[float, float]:
    """(lowest, highest) heartbeat interval; the highest wins when they cross."""
    high = max(1.0, float(grace_s) - float(margin_s) - float(timeout_s))
    low = min(max(1.0, float(min_interval)), high)
    return low, high


def clamp_interval(asked: float, low: float, high: float) -> float:
    """The interval to use when the server asked for ``asked`` seconds."""
    return min(high, max(low, float(asked)))


@dataclass(frozen=True)
class ServerTrouble:
    """IonMesh answering, but not acknowledging: since when, how often, what it said."""

    message: str
    count: int
    since: float  # when the first of this run of errors happened

    def retry_in(self, interval: float) -> float:
        """Seconds to the next attempt: interval/4, doubling, never more than the interval."""
        first = max(MIN_RETRY_S, interval / 4)
        return min(interval, first * 2 ** min(self.count - 1, 16))

    def again(self, message: str) -> ServerTrouble:
        return replace(self, message=message, count=self.count + 1)

    def status(self, now: float) -> dict[str, Any]:
        return {"message": self.message, "count": self.count,
                "since_s": round(max(0.0, now - self.since), 1)}


def server_trouble(previous: ServerTrouble | None, message: str, now: float) -> ServerTrouble:
    """One more server error: a new run of them, or the next of the current one."""
    if previous is None:
        return ServerTrouble(message, 1, now)
    return previous.again(message)


@dataclass(frozen=True)
class IdleLimit:
    """Per modem: the idle time after which its carrier was seen to forget a flow."""

    forget_s: dict[str, tuple[float, float]] = field(default_factory=dict)  # modem -> (s, when)

    def learned(self, modem: str, now: float) -> float | None:
        entry = self.forget_s.get(modem)
        if entry is None or now - entry[1] >= RELEARN_S:
            return None
        return entry[0]

    def forgot(self, modem: str, idle_s: float, now: float) -> IdleLimit:
        """A kept-alive connection over ``modem`` was dead after ``idle_s`` (a fresh one worked)."""
        known = self.learned(modem, now)
        value = idle_s if known is None else min(known, idle_s)
        return IdleLimit({**self.forget_s, modem: (value, now)})

    def fresh(self, modem: str, idle_s: float | None, now: float) -> bool:
        """Start the next request on a fresh connection rather than one idle ``idle_s``?"""
        known = self.learned(modem, now)
        return idle_s is not None and known is not None and idle_s >= known * FORGET_SLACK

    def status(self, now: float) -> dict[str, float]:
        return {m: round(v, 1) for m in sorted(self.forget_s)
                if (v := self.learned(m, now)) is not None}


def schedule_fault(now: float, last_attempt_end: float, in_flight_since: float | None,
                   interval: float, timeout: float) -> str | None:
    """Why the heartbeat is behind its own schedule, or None when it is not.

    Between two attempts there is at most an interval; an attempt itself
    takes at most two timeouts (a dead kept-alive connection, then a fresh
    one) and a failover retry another two.
    """
    if in_flight_since is not None:
        busy = now - in_flight_since
        if busy > 4 * timeout + 5:
            return f"a heartbeat has been under way for {busy:.0f} s"
        return None
    quiet = now - last_attempt_end
    if quiet > interval + timeout:
        return (f"no heartbeat attempted for {quiet:.0f} s (every {interval:g} s, "
                f"timeout {timeout:g} s)")
    return None


def command_summary(commands: Sequence[Any], total: int) -> str:
    """``commands`` as one bounded log line: the first few, then how many more."""
    shown = ", ".join(_short(c) for c in commands[:SHOWN_COMMANDS])
    more = total - min(len(commands), SHOWN_COMMANDS)
    return shown + (f" and {more} more" if more > 0 else "")


def _short(command: Any, limit: int = 80) -> str:
    text = repr(command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Reported:
    """What the last acknowledged heartbeat told IonMesh about the router, and
    how many acknowledged heartbeats have gone since each part went."""

    signal: tuple[Any, ...] | None = None  # (carrier, rssi, rsrp) with the stats
    info: tuple[tuple[str, Any], ...] | None = None  # modem_info
    beats_since_stats: int = 0
    beats_since_info: int = 0


STATS_EVERY = 10  # stats go with every 10th heartbeat at least
INFO_EVERY = 60  # modem_info with every 60th
SIGNAL_STEP_DB = 6  # a signal change this large is news


def report(stats: dict[str, Any], info: dict[str, Any], carrier: str | None,
           last: Reported | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Which of ``stats`` and ``modem_info`` the next heartbeat carries.

    Every byte on the IoT plan counts: a heartbeat carries ``stats`` when the
    carrying modem changed, when its signal moved by :data:`SIGNAL_STEP_DB` or
    more, and at least every :data:`STATS_EVERY` heartbeats (counters and
    uptime only grow, so they alone are no news); ``modem_info`` when it
    changed, and at least every :data:`INFO_EVERY`. The first heartbeat
    carries both.
    """
    signal = (carrier, stats.get("signal_rssi"), stats.get("signal_rsrp"))
    info_key = tuple(sorted(info.items()))
    send_stats: dict[str, Any] | None = stats or None
    send_info: dict[str, Any] | None = info or None
    if last is not None:
        if last.signal is not None and not _signal_news(last.signal, signal) \
                and last.beats_since_stats + 1 < STATS_EVERY:
            send_stats = None
        if last.info == info_key and last.beats_since_info + 1 < INFO_EVERY:
            send_info = None
    return send_stats, send_info


def reported(last: Reported | None, stats: dict[str, Any] | None,
             info: dict[str, Any] | None, carrier: str | None) -> Reported:
    """``last`` after a heartbeat that carried ``stats`` and ``info`` was acknowledged."""
    last = last or Reported()
    return Reported(
        signal=((carrier, stats.get("signal_rssi"), stats.get("signal_rsrp")) if stats
                else last.signal),
        info=tuple(sorted(info.items())) if info else last.info,
        beats_since_stats=0 if stats else last.beats_since_stats + 1,
        beats_since_info=0 if info else last.beats_since_info + 1,
    )


def _signal_news(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    if old[0] != new[0]:
        return True
    for before, now in zip(old[1:], new[1:]):
        if (before is None) != (now is None):
            return True
        if isinstance(before, (int, float)) and isinstance(now, (int, float)) \
                and abs(now - before) >= SIGNAL_STEP_DB:
            return True
    return False
