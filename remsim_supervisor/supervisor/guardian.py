"""The grace guardian: runs the recovery ladder against the heartbeat's deadline.

The decisions are the pure planner's (:mod:`remsim_supervisor.core.planner`):
given the time, the last acknowledged heartbeat, each modem's health and the
history of attempts, it names the next step, a wait, or nothing. This module
is the thin part around it. It is given what it works with, and nothing
else: the modems as :class:`~remsim_supervisor.supervisor.actions.ModemActions`,
the heartbeat as :class:`Heartbeat` (typed :class:`BeatFacts` and four
calls), its settings, a clock and a sleep:

* **health**, from the modems' snapshots and the heartbeat: can the modem
  carry the heartbeat (its data path is usable, its last heartbeat was not
  lost, its AT port is not wedged or gone), does its AT port answer, which
  capabilities it has (a netifd interface to ``ifup``, a USB device to
  re-authorise, reset and power lines);
* **steps**, one task per modem at most, each logged with the grace left:
  ``reroute`` (the heartbeat to the other modem), ``ifup``, ``radio_cycle``
  (``AT+CFUN`` off and on), ``soft_reset`` (the vendor's AT reset),
  ``usb_reauth`` (sysfs ``authorized`` 0 then 1), ``gpio_reset`` (the reset
  line's pulse) and ``power_cycle``, each carried out by the modems'
  actions (which also put the IoT modem back on its own SIM after a reset);
* **judging** a step: it worked when the modem can carry the heartbeat again
  within the step's expected time (a heartbeat over it is asked for as soon
  as it is registered again); the time it took teaches the cost model;
* **the heartbeat's own schedule**: no attempt for longer than interval +
  timeout is a fault of its own, whatever the modems' health: logged, shown
  as ``heartbeat.schedule_fault``, and a heartbeat asked for at once. A
  server that answers without acknowledging is not a modem's fault: the
  heartbeat reports it (``grace.at_risk``) and no step is taken for it.

**Waking.** The guardian sleeps until something happens or its next
deadline, never on a tick: :meth:`Guardian.poke` (a heartbeat failure, a
link change, a modem's state change, a path move, an ack, a step ending)
wakes it at once; otherwise it wakes at the earliest of the planner's
``Wait.until``, the grace deadline (and its margin), the moment a down modem
has settled (:data:`SETTLE_S`), the end of the start-up period and the
moment the heartbeat would fall behind its schedule (:func:`schedule_due`).

``status`` shows the latest steps under ``recoveries``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remsim_supervisor.core.cadence import schedule_fault
from remsim_supervisor.core.planner import Attempt, CostModel, ModemHealth, Step, Wait, plan
from remsim_supervisor.supervisor.actions import BeatFacts, Heartbeat, ModemActions
from remsim_supervisor.supervisor.ifcommand import restart_interface
from remsim_supervisor.vendors import RUNG_COSTS

if TYPE_CHECKING:
    from remsim_supervisor.config import Config

log = logging.getLogger("remsim_supervisor.supervisor.guardian")

HISTORY_S = 2 * 3600.0
# A modem that carried the heartbeat counts as down once it has been unable to
# for this long: a reboot, a re-probe or one lost heartbeat is not an incident.
SETTLE_S = 15.0
# With no path at all, modems that never worked are worked on only after the
# daemon has given them this long to come up (a cold boot takes a minute).
STARTUP_S = 60.0
# The heartbeat reports no event for an ack: a step waiting for one looks this often.
ACK_LOOK_S = 0.5
IFUP_TIMEOUT_S = 30.0
REROUTE_TIMEOUT_S = 15.0  # the path move itself; its routes are bounded by the heartbeat
ON_DEMAND_SETTLE_S = 2.0  # a reset first takes the modem away; look after this

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


@dataclass(frozen=True)
class GuardianSettings:
    grace_s: float
    margin_s: float
    max_resets_per_hour: int
    heartbeat_timeout_s: float
    step_costs: tuple[tuple[str, str, float], ...] = ()
    ifup: tuple[str, ...] = ("ifup",)
    ifdown: tuple[str, ...] = ()  # run before ifup when set (escalation.ifdown_command)

    @classmethod
    def from_config(cls, config: Config, ifup: Sequence[str] = ("ifup",)) -> GuardianSettings:
        esc = config.escalation
        return cls(grace_s=config.supervisor.grace_period, margin_s=esc.margin,
                   max_resets_per_hour=esc.max_resets_per_hour,
                   heartbeat_timeout_s=config.ionmesh.timeout,
                   step_costs=tuple(esc.step_costs), ifup=tuple(esc.ifup_command or ifup),
                   ifdown=tuple(esc.ifdown_command or ()))


def schedule_due(facts: BeatFacts, timeout: float) -> float:
    """When :func:`~remsim_supervisor.core.cadence.schedule_fault` would first say so."""
    if facts.in_flight_since is not None:
        return facts.in_flight_since + 4 * timeout + 5
    return facts.last_attempt_end + facts.interval + timeout


class Guardian:
    def __init__(self, modems: ModemActions, heartbeat: Heartbeat, settings: GuardianSettings,
                 *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 spawn: Spawn | None = None) -> None:
        self.modems = modems
        self._spawn = spawn or (lambda coro, name: asyncio.create_task(coro, name=name))
        self.heartbeat = heartbeat
        self.clock = clock
        self._sleep = sleep
        self.settings = settings
        overrides = {(model, rung): s for model, rung, s in settings.step_costs}
        self.costs = CostModel(defaults=RUNG_COSTS, overrides=overrides)
        self.history: list[Attempt] = []
        self.running: dict[str, asyncio.Task[None]] = {}
        self.down_since: dict[str, float] = {}
        self.seen_ok: set[str] = set()
        self.started = clock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self._wake = asyncio.Event()
        self._news = asyncio.Event()  # set and replaced on every poke: steps waiting for news
        self._last_wait: str | None = None
        self.next_wake: float | None = None  # when the loop will look again unless poked

    def configure(self, settings: GuardianSettings) -> None:
        """New settings (a reload); the learned costs are kept."""
        self.settings = settings
        self.poke()

    def poke(self) -> None:
        """Something changed: look again now."""
        self._wake.set()
        self._news.set()
        self._news = asyncio.Event()

    # -- health --------------------------------------------------------------------

    def health(self) -> list[ModemHealth]:
        """The modems the planner may act on, with their health.

        Left out: a modem that never carried the heartbeat (nothing to
        restore, and resetting it would only hurt) unless no modem can carry
        it and the start-up period is over; and one that has been down for
        less than :data:`SETTLE_S`.
        """
        now = self.clock()
        views = []
        for snap in self.modems.snapshots():
            name = snap.name
            carries = self.heartbeat.modem_ok(name) and snap.state not in ("failed", "absent")
            if carries:
                self.seen_ok.add(name)
                self.down_since.pop(name, None)
            else:
                self.down_since.setdefault(name, now)
            views.append((snap, carries))
        stranded = not any(carries for _s, carries in views) and now - self.started >= STARTUP_S
        out = []
        for snap, carries in views:
            name = snap.name
            if not carries:
                settled = now - self.down_since[name] >= SETTLE_S
                if not ((name in self.seen_ok and settled) or stranded):
                    continue
            caps = set(snap.capabilities)
            if snap.interface and shutil.which(self._ifup_command()[0]):
                caps.add("interface")
            out.append(
                ModemHealth(
                    name=name,
                    role=snap.role,
                    model=snap.model,
                    heartbeat_ok=carries,
                    capabilities=frozenset(caps),
                    at_responsive=snap.at_port and snap.state != "failed",
                    down_since=None if carries else self.down_since[name],
                )
            )
        return out

    def _ifup_command(self) -> list[str]:
        return list(self.settings.ifup)

    # -- the loop ----------------------------------------------------------------------

    def watch_schedule(self, now: float) -> str | None:
        """Is the heartbeat behind its own schedule? Says so once, and asks for one now."""
        facts = self.heartbeat.facts()
        fault = schedule_fault(now, facts.last_attempt_end, facts.in_flight_since,
                               facts.interval, self.settings.heartbeat_timeout_s)
        if fault is not None:
            if facts.schedule_fault is None:
                log.error("the heartbeat is behind its schedule: %s (%.0f s of grace left); "
                          "sending one now", fault, facts.grace_left_s)
            self.heartbeat.note_schedule_fault(fault)
        elif facts.schedule_fault is not None:
            log.info("the heartbeat is back on its schedule")
            self.heartbeat.note_schedule_fault(None)
        return fault

    async def run(self) -> None:
        while True:
            self._wake.clear()  # before the facts are read: a poke from now on is seen
            now = self.clock()
            self.watch_schedule(now)
            self.history = [a for a in self.history if a.ended is None or now - a.ended < HISTORY_S]
            facts = self.heartbeat.facts()
            decision = plan(
                now=now,
                last_ack=facts.last_ack,
                grace_s=self.settings.grace_s,
                margin_s=self.settings.margin_s,
                modems=self.health(),
                history=self.history,
                costs=self.costs,
                max_resets_per_hour=self.settings.max_resets_per_hour,
                path=facts.path,
            )
            if isinstance(decision, Step) and decision.modem not in self.running:
                self._start(decision)
                continue  # the other modem may need a step of its own
            if isinstance(decision, Wait) and decision.reason != self._last_wait:
                log.info("holding back: %s", decision.reason)
                self._last_wait = decision.reason
            self.next_wake = self.deadline(now, facts, decision)
            await self._nap(self.next_wake - now)

    def deadline(self, now: float, facts: BeatFacts, decision: Step | Wait | None) -> float:
        """When the plan may come out differently without any event: the next look."""
        grace_end = facts.last_ack + self.settings.grace_s
        times = [schedule_due(facts, self.settings.heartbeat_timeout_s),
                 grace_end - self.settings.margin_s, grace_end]
        if isinstance(decision, Wait):
            times.append(decision.until)
        times += [since + SETTLE_S for since in self.down_since.values()]
        if self.down_since and not self.seen_ok:
            times.append(self.started + STARTUP_S)
        later = [t for t in times if t > now]
        return min(later) if later else now + HISTORY_S

    async def _nap(self, seconds: float) -> None:
        """Until a poke or ``seconds`` on the guardian's clock, whichever comes first."""
        await self._until(self._wake, seconds)

    async def _news_or(self, seconds: float) -> None:
        """Until the next poke or ``seconds``, for a step waiting on the modem or an ack."""
        await self._until(self._news, seconds)

    async def _until(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` on the guardian's clock have passed."""
        woken = asyncio.ensure_future(event.wait())
        slept = asyncio.ensure_future(self._sleep(max(0.0, seconds)))
        try:
            await asyncio.wait({woken, slept}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            slept.cancel()

    async def stop(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        if self.running:
            await asyncio.wait(set(self.running.values()), timeout=1.0)

    def grace_left(self) -> float:
        return self.heartbeat.facts().grace_left_s

    # -- steps ---------------------------------------------------------------------------

    def _start(self, step: Step) -> None:
        attempt = Attempt(step.modem, step.rung, self.clock(), None, None)
        self.history.append(attempt)
        record = {
            "modem": step.modem,
            "step": step.rung,
            "started": round(time.time(), 1),
            "result": "running",
            "grace_left_s": round(self.grace_left(), 1),
            "expected_s": round(step.expected_s, 1),
            "reason": step.reason,
            "urgent": step.urgent,
        }
        self.recent.appendleft(record)
        snap = self.modems.snapshot(step.modem)
        log.warning(
            "%s (%s): recovery step %s%s, expected %.0f s, %.0f s of grace left: %s",
            step.modem,
            snap.role if snap else "?",
            step.rung,
            " (best effort)" if step.best_effort else "",
            step.expected_s,
            self.grace_left(),
            step.reason,
        )
        # A step's task: the daemon hands its task group's spawn, so shutdown ends it too.
        self.running[step.modem] = self._spawn(
            self._run_step(step, attempt, record), f"recovery {step.modem}")

    async def _run_step(self, step: Step, attempt: Attempt, record: dict[str, Any]) -> None:
        name = step.modem
        acts_on_modem = step.rung != "reroute"
        ok = False
        try:
            if acts_on_modem:
                self.modems.recovery_started(name, step.rung)
            done = await self._do(step)
            if acts_on_modem:
                self.modems.recovery_ended(name, step.rung, done)
            ok = done and await self._recovered(step, attempt.started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s: recovery step %s failed: %s", name, step.rung, exc)
        finally:
            self.modems.recovery_ended(name, step.rung, ok)
            ended = self.clock()
            self.history = [
                Attempt(a.modem, a.rung, a.started, ended, ok) if a is attempt else a
                for a in self.history
            ]
            self.running.pop(name, None)
            record["result"] = "ok" if ok else "failed"
            record["took_s"] = round(ended - attempt.started, 1)
            snap = self.modems.snapshot(name)
            if ok and snap is not None:
                self.costs = self.costs.observe(snap.model, step.rung, ended - attempt.started)
            log.log(
                logging.INFO if ok else logging.WARNING,
                "%s: recovery step %s %s after %.0f s, %.0f s of grace left",
                name,
                step.rung,
                "worked" if ok else "did not help",
                ended - attempt.started,
                self.grace_left(),
            )
            self.poke()

    async def _do(self, step: Step) -> bool:
        """Carry out the step's action; True when the action itself went through."""
        name, rung, reason = step.modem, step.rung, step.reason
        if rung == "reroute":
            try:
                return await asyncio.wait_for(self.modems.reroute(name, reason),
                                              REROUTE_TIMEOUT_S)
            except TimeoutError:
                log.warning("%s: reroute took longer than %.0f s", name, REROUTE_TIMEOUT_S)
                return False
        if rung == "ifup":
            snap = self.modems.snapshot(name)
            return await self._ifup(snap.interface or "") if snap is not None else False
        actions = {
            "radio_cycle": lambda: self.modems.radio_cycle(name),
            "soft_reset": lambda: self.modems.soft_reset(name, reason),
            "usb_reauth": lambda: self.modems.usb_reauth(name),
            "gpio_reset": lambda: self.modems.reset_pulse(name, reason),
            "power_cycle": lambda: self.modems.power_cycle(name, reason),
        }
        action = actions.get(rung)
        if action is None:
            log.error("%s: unknown recovery step %r", name, rung)
            return False
        return await action()

    async def _ifup(self, interface: str) -> bool:
        return await restart_interface(self.settings.ifup, self.settings.ifdown or None,
                                       interface, IFUP_TIMEOUT_S)

    async def _recovered(self, step: Step, started: float) -> bool:
        """Wait, up to the step's expected time, for a heartbeat over the modem to be acked."""
        deadline = self.clock() + max(step.expected_s, 5.0)
        asked = False
        while (now := self.clock()) < deadline:
            if self.heartbeat.acked_over_since(step.modem, started):
                return True
            snap = self.modems.snapshot(step.modem)
            if not asked and snap is not None and snap.on_network:
                # Back on the network: prove it with a heartbeat now, not an interval later.
                self.heartbeat.beat_now()
                asked = True
            # A state change wakes this at once; an ack is looked for every ACK_LOOK_S.
            await self._news_or(min(deadline - now, ACK_LOOK_S))
        return False

    async def on_demand(self, name: str, rung: str, timeout: float | None = None) -> dict[str, Any]:
        """``modem NAME reset --level RUNG``: one step now, and whether the modem came back.

        It came back when its owner task has it registered (or connected)
        again, after the step, within the step's expected time (or
        ``timeout``). A step of the guardian already running on the modem
        is not doubled.
        """
        snap = self.modems.snapshot(name)
        if snap is None:
            return {"ok": False, "error": f"no modem named {name!r}"}
        if name in self.running:
            return {"ok": False, "error": f"{name} is in a recovery step already; try later"}
        expected = timeout or self.costs.expected(snap.model, rung)
        step = Step(modem=name, rung=rung, reason="asked for on the command line",
                    expected_s=expected, grace_left_s=self.grace_left(), urgent=False)
        log.warning("%s (%s): recovery step %s on demand, %.0f s of grace left", name,
                    snap.role, rung, self.grace_left())
        started = self.clock()
        self.modems.recovery_started(name, rung)
        try:
            done = await self._do(step)
        finally:
            self.modems.recovery_ended(name, rung, True)
        if not done:
            return {"ok": True, "came_back": False, "state": self._state(name),
                    "message": f"the {rung} step could not be carried out (see logread)"}
        # The modem first drops (a reset takes its port away), then comes back.
        await self._sleep(min(ON_DEMAND_SETTLE_S, expected / 4))
        deadline = started + expected
        while (now := self.clock()) < deadline:
            if (snap := self.modems.snapshot(name)) is not None and snap.on_network:
                took = now - started
                log.info("%s: %s on demand: back after %.0f s", name, rung, took)
                return {"ok": True, "came_back": True, "state": snap.state,
                        "took_s": round(took, 1)}
            await self._news_or(deadline - now)
        state = self._state(name)
        return {"ok": True, "came_back": False, "state": state,
                "message": f"{name} is {state} {expected:.0f} s after {rung}"}

    def _state(self, name: str) -> str:
        snap = self.modems.snapshot(name)
        return snap.state if snap is not None else "absent"

    def status(self) -> list[dict[str, Any]]:
        return list(self.recent)
