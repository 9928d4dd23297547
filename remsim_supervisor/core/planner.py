"""The recovery planner: (deadline, ladder, history) in, the next step out.

:func:`plan` is pure. Time comes in as arguments (``now``, ``last_ack``, the
attempts' timestamps, all on one monotonic clock); nothing here reads a
clock, a file or a port, so a test plays six hours in a few milliseconds.
The guardian calls it whenever something changes (an ack, a modem's health,
a step ending) and gets one of:

* a :class:`Step` to start now on one modem (the guardian records it as an
  :class:`Attempt` with ``ended=None`` and calls again: the other modem may
  get a step of its own, so both are worked on at once);
* a :class:`Wait`: something useful becomes allowed at ``until`` (backoff);
* None: nothing to start; plan again when something changes.

The rules, in order (docs/guardian.md explains each):

1. The deadline is ``last_ack + grace``; an urgent step must finish
   ``margin`` before it. If the modem carrying the heartbeat (``path``) can
   carry it, nothing is urgent: modems that are down are repaired in the
   background (whole ladder, same backoff), the carrier is never touched.
2. If the carrier cannot and another modem can: ``reroute`` first (to the
   primary when both others could).
3. Per modem, the ladder's rungs it has the capabilities for, in ladder
   order; a rung is skipped when it cannot finish before deadline - margin.
   The first untried rung of this incident wins; once all were tried,
   retries go round the ladder again (fewest tries first).
4. Backoff: a retry waits ``min(60 s * 2**(k-1), 900 s)`` after the modem's
   previous attempt ended (k = retries so far in the incident); rungs that
   reset the modem are capped at ``max_resets_per_hour`` in any sliding hour.
5. Across modems, the step expected to restore a path soonest wins; the
   primary on ties, since it then carries both the user's data and the
   heartbeat.
6. When no rung of a modem can still meet the deadline (or it has passed),
   the modem is still repaired, marked ``best_effort``: a lost deadline is
   no reason to leave a modem dead.

:class:`~remsim_supervisor.core.costs.CostModel` holds what each rung is
expected to take per model: the defaults are data handed in (each vendor
profile's ``rung_costs``, collected as ``remsim_supervisor.vendors.RUNG_COSTS``),
overridable from the configuration, and learned from observed recoveries as
a bounded moving average.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from remsim_supervisor.core.costs import CostModel

__all__ = [
    "CAPABILITIES",
    "HOUR_S",
    "INCIDENT_GAP_S",
    "RETRY_BASE_S",
    "RETRY_MAX_S",
    "RUNGS",
    "Attempt",
    "ModemHealth",
    "Rung",
    "Step",
    "Wait",
    "default_ladder",
    "plan",
    "retry_gap",
]

HOUR_S = 3600.0
RETRY_BASE_S = 60.0  # first retry of an incident, after the whole ladder was tried once
RETRY_MAX_S = 900.0  # retries never space out further than this
INCIDENT_GAP_S = 2 * RETRY_MAX_S  # without down_since, a longer lull ends an incident

REROUTE = "reroute"
RUNGS = ("reroute", "ifup", "radio_cycle", "soft_reset", "usb_reauth", "gpio_reset",
         "power_cycle")

# What a rung needs. "peer": another modem can carry the heartbeat (derived);
# "at": the AT port answers (derived from at_responsive); the rest must be in
# ModemHealth.capabilities: "interface" (netifd knows the data interface),
# "usb" (the USB device's sysfs `authorized` is known), "reset_gpio",
# "power_gpio" (the lines are configured).
CAPABILITIES = ("interface", "usb", "reset_gpio", "power_gpio")

_SHAPE: tuple[tuple[str, bool, str | None], ...] = (
    # name, resets the modem, requires
    ("reroute", False, "peer"),
    ("ifup", False, "interface"),
    ("radio_cycle", False, "at"),
    ("soft_reset", True, "at"),
    ("usb_reauth", True, "usb"),
    ("gpio_reset", True, "reset_gpio"),
    ("power_cycle", True, "power_gpio"),
)

# --- the data -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rung:
    """One recovery step kind: its default cost, whether it resets the modem,
    and the capability it needs (None: always possible)."""

    name: str
    cost_s: float
    resets_modem: bool
    requires: str | None


@dataclass(frozen=True)
class Attempt:
    """A step that was started: ``ended``/``ok`` are None while it runs.

    A ``reroute`` attempt names the modem the heartbeat was moved to."""

    modem: str
    rung: str
    started: float
    ended: float | None
    ok: bool | None


@dataclass(frozen=True)
class ModemHealth:
    """What the planner needs to know about one modem, now.

    ``down_since`` is when it stopped being able to carry the heartbeat;
    attempts from then on form the current incident. None: the incident is
    the latest run of failed attempts with no success and no lull longer
    than :data:`INCIDENT_GAP_S` between them or since the last one.
    """

    name: str
    role: str  # "primary" or "iot"
    model: str
    heartbeat_ok: bool  # can carry the heartbeat now
    capabilities: frozenset[str]
    at_responsive: bool
    down_since: float | None = None


@dataclass(frozen=True)
class Step:
    """Start ``rung`` on ``modem`` now (for ``reroute``: move the heartbeat to it).

    ``expected_s`` is the time the step is expected to take (in an urgent
    step, until the heartbeat can ride again: a repair of a modem the
    heartbeat is not routed over includes the reroute that must follow).
    ``urgent``: the heartbeat rides no healthy path, so the step races the
    deadline; otherwise it repairs a modem in the background. ``best_effort``
    (urgent steps only): it cannot finish before the deadline less the
    margin, and no step of that modem could.
    """

    modem: str
    rung: str
    reason: str
    expected_s: float
    grace_left_s: float
    best_effort: bool = False
    urgent: bool = True


@dataclass(frozen=True)
class Wait:
    """Nothing may start now, but something may at ``until``."""

    until: float
    reason: str


def default_ladder(costs: Mapping[str, float]) -> tuple[Rung, ...]:
    """The seven rungs, cheapest first, with the costs of one model (rung -> seconds)."""
    return tuple(Rung(name, costs[name], resets, requires) for name, resets, requires in _SHAPE)


def retry_gap(k: int) -> float:
    """The pause before the ``k``-th retry (k >= 1) of an incident."""
    return min(RETRY_BASE_S * 2.0 ** min(max(k, 1) - 1, 30), RETRY_MAX_S)


# --- the planner ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Option:
    modem: ModemHealth
    step: Step | None
    wait: Wait | None


def plan(
    now: float,
    last_ack: float,
    grace_s: float,
    margin_s: float,
    modems: Sequence[ModemHealth],
    history: Sequence[Attempt],
    *,
    costs: CostModel,
    max_resets_per_hour: int,
    ladder: Sequence[Rung] | None = None,
    path: str | None = None,
) -> Step | Wait | None:
    """The next recovery step, a backoff, or nothing (see the module docstring).

    ``path`` names the modem the heartbeat is routed over (None: the ``iot``
    modem, else the first). Without ``ladder`` each modem gets
    :func:`default_ladder` with its model's row of ``costs``; ``ladder`` replaces it for
    every modem (costs still come from ``costs``, falling back to
    ``Rung.cost_s`` for rungs it does not know). ``history`` holds every
    attempt of the last hour and of the incidents still open, finished or
    running.
    """
    deadline = last_ack + grace_s
    available = deadline - margin_s - now
    carrier = _carrier(modems, path)
    urgent = carrier is None or not carrier.heartbeat_ok
    down = [m for m in modems if not m.heartbeat_ok]
    if not down:
        return None
    ctx = _Context(now, last_ack, deadline, margin_s, available, history, costs,
                   max_resets_per_hour, ladder, carrier, urgent)

    options: list[_Option] = []
    if urgent:
        reroute = ctx.reroute_option(modems)
        if reroute is not None:
            if reroute.step is not None:
                return reroute.step
            options.append(reroute)
    busy = {a.modem for a in history if a.ended is None and a.rung != REROUTE}
    for modem in down:
        if modem.name not in busy:
            option = ctx.repair_option(modem)
            if option is not None:
                options.append(option)

    steps = [o for o in options if o.step is not None]
    if steps:
        def rank(o: _Option) -> tuple[bool, float, bool, str]:
            assert o.step is not None
            return (o.step.best_effort, o.step.expected_s, o.modem.role != "primary",
                    o.modem.name)
        best = min(steps, key=rank).step
        assert best is not None
        return best
    waits = [o.wait for o in options if o.wait is not None]
    if waits:
        return min(waits, key=lambda w: w.until)
    return None


def _carrier(modems: Sequence[ModemHealth], path: str | None) -> ModemHealth | None:
    if path is not None:
        return next((m for m in modems if m.name == path), None)
    return next((m for m in modems if m.role == "iot"), modems[0] if modems else None)


@dataclass(frozen=True)
class _Candidate:
    rung: Rung
    index: int
    cost: float
    start: float
    tries: int
    why_later: str


@dataclass(frozen=True)
class _Context:
    now: float
    last_ack: float
    deadline: float
    margin_s: float
    available: float
    history: Sequence[Attempt]
    costs: CostModel
    cap: int
    ladder: Sequence[Rung] | None
    carrier: ModemHealth | None
    urgent: bool

    def rungs(self, modem: ModemHealth) -> Sequence[Rung]:
        if self.ladder is not None:
            return self.ladder
        return default_ladder(self.costs.row(modem.model))

    def cost(self, modem: ModemHealth, rung: Rung) -> float:
        return self.costs.expected(modem.model, rung.name, default=rung.cost_s)

    def fits(self, start: float, cost: float) -> bool:
        # A background repair leaves the heartbeat's path alone: no race.
        return not self.urgent or start + cost <= self.deadline - self.margin_s

    def grace_left(self) -> float:
        return self.deadline - self.now

    # -- reroute: move the heartbeat to a modem that can carry it --------------------------------

    def reroute_option(self, modems: Sequence[ModemHealth]) -> _Option | None:
        targets = [m for m in modems if m.heartbeat_ok and m is not self.carrier]
        if not targets:
            return None
        target = min(targets, key=lambda m: (m.role != "primary", m.name))
        rung = next((r for r in self.rungs(target) if r.name == REROUTE), None)
        if rung is None:
            return None
        # The heartbeat's incident began with the last acknowledged heartbeat.
        tried = [a for a in self.history if a.rung == REROUTE and a.started >= self.last_ack]
        if any(a.ended is None for a in tried):
            return None  # one is under way
        cost = self.cost(target, rung)
        start = self.now
        if tried:
            last_end = max(a.ended if a.ended is not None else a.started for a in tried)
            start = max(start, last_end + retry_gap(len(tried)))
        was = self.carrier.name if self.carrier is not None else "no modem"
        if start > self.now:
            return _Option(target, None, Wait(start, (
                f"reroute to {target.name} tried {len(tried)} time(s) since the last ack: "
                f"retry spacing")))
        fits = self.fits(start, cost)
        reason = (f"heartbeat path {was} cannot carry the heartbeat, {target.name} can: "
                  f"move it ({cost:.0f} s expected, {self.grace_left():.0f} s of grace left)")
        return _Option(target, Step(target.name, REROUTE, reason, cost, self.grace_left(),
                                    best_effort=not fits), None)

    # -- repairs on one modem -----------------------------------------------------------------

    def incident(self, modem: ModemHealth) -> list[Attempt]:
        mine = sorted((a for a in self.history if a.modem == modem.name and a.rung != REROUTE),
                      key=lambda a: a.started)
        if modem.down_since is not None:
            since = modem.down_since
            return [a for a in mine if a.started >= since and a.ok is not True]
        # Walk back from now while attempts keep failing without a long lull:
        # a dead modem is retried at least every RETRY_MAX_S, so a longer
        # silence means it worked in between.
        run: list[Attempt] = []
        horizon = self.now
        for attempt in reversed(mine):
            end = attempt.ended if attempt.ended is not None else attempt.started
            if attempt.ok or horizon - end > INCIDENT_GAP_S:
                break
            run.append(attempt)
            horizon = min(horizon, attempt.started)
        return run[::-1]

    def reset_release(self, modem: ModemHealth, reset_rungs: Iterable[str]) -> float:
        """The earliest time a reset keeps every sliding hour within the cap."""
        if self.cap <= 0:
            return math.inf
        names = set(reset_rungs)
        starts = sorted((a.started for a in self.history if a.modem == modem.name
                         and a.rung in names and a.started > self.now - HOUR_S), reverse=True)
        if len(starts) < self.cap:
            return self.now
        # The cap-th most recent reset must have left the hour.
        return starts[self.cap - 1] + HOUR_S

    def repair_option(self, modem: ModemHealth) -> _Option | None:
        have = set(modem.capabilities)
        if modem.at_responsive:
            have.add("at")
        else:
            have.discard("at")
        rungs = [r for r in self.rungs(modem) if r.name != REROUTE
                 and (r.requires is None or r.requires in have)]
        if not rungs:
            return None
        incident = self.incident(modem)
        tries = Counter(a.rung for a in incident)
        seen: set[str] = set()
        retries = 0
        for a in incident:
            retries += a.rung in seen
            seen.add(a.rung)
        last_end = max((a.ended if a.ended is not None else a.started for a in incident),
                       default=None)
        release = self.reset_release(modem, (r.name for r in self.rungs(modem)
                                             if r.resets_modem))
        # Repairing a modem the heartbeat is not routed over helps only after a reroute.
        follow = 0.0
        if self.urgent and modem is not self.carrier:
            reroute = next((r for r in self.rungs(modem) if r.name == REROUTE), None)
            if reroute is not None:
                follow = self.cost(modem, reroute)

        candidates: list[_Candidate] = []
        for index, rung in enumerate(self.rungs(modem)):
            if rung not in rungs:
                continue
            start, why = self.now, ""
            if tries[rung.name] and last_end is not None:
                retry_at = last_end + retry_gap(retries + 1)
                if retry_at > start:
                    start, why = retry_at, f"retry spacing {retry_gap(retries + 1):.0f} s"
            if rung.resets_modem and release > start:
                start, why = release, f"at most {self.cap} resets per hour"
            if math.isinf(start):
                continue
            candidates.append(_Candidate(rung, index, self.cost(modem, rung) + follow, start,
                                         tries[rung.name], why))
        if not candidates:
            return None

        fitting = [c for c in candidates if self.fits(c.start, c.cost)]
        pool, best_effort = (fitting, False) if fitting else (candidates, True)
        ready = [c for c in pool if c.start <= self.now]
        if not ready:
            first = min(pool, key=lambda c: c.start)
            return _Option(modem, None, Wait(first.start, (
                f"holding back on {modem.name}: {first.rung.name} allowed in "
                f"{first.start - self.now:.0f} s ({first.why_later})")))
        choice = min(ready, key=lambda c: (c.tries, c.index))
        skipped = [c.rung.name for c in candidates
                   if c.index < choice.index and c.tries <= choice.tries
                   and not self.fits(c.start, c.cost)]
        return _Option(modem, Step(modem.name, choice.rung.name,
                                   self._reason(modem, choice, skipped, best_effort),
                                   choice.cost, self.grace_left(), best_effort,
                                   self.urgent), None)

    def _reason(self, modem: ModemHealth, choice: _Candidate, skipped: list[str],
                best_effort: bool) -> str:
        what = "retry" if choice.tries else "first try"
        if self.urgent:
            text = (f"{modem.name} ({modem.model}) cannot carry the heartbeat: "
                    f"{choice.rung.name} ({what}, {choice.cost:.0f} s expected, "
                    f"{self.available:.0f} s before deadline less margin)")
        else:
            via = self.carrier.name if self.carrier is not None else "?"
            text = (f"{modem.name} ({modem.model}) is down, the heartbeat rides {via}: "
                    f"{choice.rung.name} in the background ({what}, {choice.cost:.0f} s "
                    f"expected)")
        if skipped:
            text += f"; skipped as too slow: {', '.join(skipped)}"
        if best_effort:
            text += "; no step can meet the deadline any more: best effort"
        return text
