"""Which uplink carries the LAN: the choice of the router's own default route, pure.

The LAN failover policy (``config lan``, off by default) keeps the router's
default route on the first usable uplink of an ordered list: an Ethernet or
Wi-Fi WAN device, the primary modem, the IoT modem. This module decides;
:mod:`remsim_supervisor.supervisor.lanfailover` gathers the facts and
carries the decision out.

The facts of an uplink (:class:`UplinkFacts`) are the passive signals (its
link and carrier from rtnetlink, an address, a modem's registration), the
verdict of the probes sent through it (:func:`probe_round`: a verdict turns
bad after ``down_after`` unanswered rounds in a row and good again after
``up_after`` answered ones) and, for a capped uplink, the bytes of its daily
budget left (:func:`count_usage` keeps the day's count from the interface's
byte counters across a counter reset and a new day).

:func:`choose` takes the facts in order of preference, the previous
:class:`Choice` and the time, and returns the next choice with its reason:

* the active uplink stays while it is usable;
* when it is not (a link event, a probe verdict, a spent budget), the first
  usable uplink takes over at once: no hold on the way out;
* a preferred uplink that becomes usable again takes the LAN back only after
  it stayed usable for ``hold_s`` (failback hysteresis); a single bad fact
  in between starts its wait again;
* with no usable uplink there is no choice (``active`` None): the kernel's
  own main table decides, as if the policy were off.

Time is a number handed in (monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

MODEM_KINDS = ("primary", "iot")


@dataclass(frozen=True)
class UplinkFacts:
    """What is known of one uplink now.

    ``kind`` is ``device`` (a WAN device named in the configuration),
    ``primary`` or ``iot`` (a modem's data device). ``link`` None: not known
    yet. ``registered`` is None for a device uplink. ``probe`` None: no
    verdict (no probe targets, or none answered or missed often enough yet).
    ``budget_left`` in bytes, None when the uplink has no cap.
    """

    name: str
    kind: str = "device"
    device: str | None = None
    link: bool | None = None
    address: bool = False
    registered: bool | None = None
    probe: bool | None = None
    budget_left: int | None = None


def problem(facts: UplinkFacts) -> str | None:
    """Why this uplink cannot carry the LAN now, in a few words; None when it can."""
    if facts.device is None:
        return "no data device"
    if facts.link is None:
        return "link not known yet"
    if not facts.link:
        return "link down"
    if not facts.address:
        return "no address"
    if facts.registered is False:
        return "not registered"
    if facts.probe is False:
        return "probes unanswered"
    if facts.budget_left is not None and facts.budget_left <= 0:
        return "daily cap reached"
    return None


@dataclass(frozen=True)
class Choice:
    """The uplink chosen (None: none is usable), since when, and why.

    ``waiting``/``waiting_since``: a preferred uplink that is usable again and
    waiting out the failback hold.
    """

    active: str | None = None
    since: float = 0.0
    reason: str = "not decided yet"
    waiting: str | None = None
    waiting_since: float | None = None

    def failback_in(self, now: float, hold_s: float) -> float | None:
        """Seconds until the waiting uplink takes the LAN back; None when none waits."""
        if self.waiting is None or self.waiting_since is None:
            return None
        return max(0.0, hold_s - (now - self.waiting_since))


def choose(uplinks: Sequence[UplinkFacts], previous: Choice, now: float,
           hold_s: float) -> Choice:
    """The next choice, given the uplinks' facts in order of preference."""
    usable = [u for u in uplinks if problem(u) is None]
    current = next((u for u in uplinks if u.name == previous.active), None)
    if not usable:
        why = "; ".join(f"{u.name}: {problem(u)}" for u in uplinks) or "no uplink configured"
        if previous.active is None and previous.reason.startswith("no usable uplink"):
            return replace(previous, reason=f"no usable uplink ({why})")
        return Choice(None, now, f"no usable uplink ({why})")
    best = usable[0]
    if current is None or problem(current) is not None:
        if current is None:
            reason = f"{best.name} is the first usable uplink"
        else:
            reason = f"failover: {current.name}: {problem(current)}"
        return Choice(best.name, now, reason)
    if best.name == current.name:
        return replace(previous, waiting=None, waiting_since=None)
    # A preferred uplink is usable again: it takes the LAN back after the hold.
    if previous.waiting == best.name and previous.waiting_since is not None:
        if now - previous.waiting_since >= hold_s:
            return Choice(best.name, now, f"failback: {best.name} usable for {hold_s:g} s")
        return previous
    return replace(previous, waiting=best.name, waiting_since=now)


@dataclass(frozen=True)
class ProbeRecord:
    """Consecutive answered and unanswered probe rounds of one uplink, and the verdict."""

    failures: int = 0
    successes: int = 0
    verdict: bool | None = None


def probe_round(record: ProbeRecord, answered: bool, down_after: int,
                up_after: int) -> ProbeRecord:
    """The record after one round (answered: any target answered within the timeout).

    A first answer gives a good verdict at once, so an uplink is usable from
    the start; a bad verdict needs ``down_after`` misses in a row and is
    cleared by ``up_after`` answers in a row.
    """
    if answered:
        successes = record.successes + 1
        verdict = record.verdict
        if verdict is None or (verdict is False and successes >= up_after):
            verdict = True
        return ProbeRecord(0, successes, verdict)
    failures = record.failures + 1
    verdict = False if failures >= down_after else record.verdict
    return ProbeRecord(failures, 0, verdict)


@dataclass(frozen=True)
class DailyUsage:
    """Bytes an uplink moved on ``day`` (any label of a calendar day), from its counters."""

    day: str | None = None
    used: int = 0
    last: int | None = None  # the counter reading the count is up to


def count_usage(usage: DailyUsage, day: str, reading: int | None) -> DailyUsage:
    """The usage after reading the interface's byte counter (rx + tx) on ``day``.

    A new day starts from zero. A reading below the last one means the
    counter started again (the device was re-created): what it shows now
    was all moved since. None (no such device) keeps the count as it is.
    """
    used = usage.used if day == usage.day else 0
    if reading is None:
        return DailyUsage(day, used, None)
    if usage.last is not None:
        used += reading - usage.last if reading >= usage.last else reading
    return DailyUsage(day, used, reading)


def budget_left(cap_bytes: int | None, usage: DailyUsage, day: str) -> int | None:
    """Bytes left of a daily cap today; None without a cap."""
    if cap_bytes is None:
        return None
    return cap_bytes - (usage.used if usage.day == day else 0)


__all__ = [
    "MODEM_KINDS",
    "Choice",
    "DailyUsage",
    "ProbeRecord",
    "UplinkFacts",
    "budget_left",
    "choose",
    "count_usage",
    "probe_round",
    "problem",
]
