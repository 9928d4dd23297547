"""The grace guardian: runs the recovery ladder against the heartbeat's deadline.

The decisions are the pure planner's (:mod:`remsim_supervisor.core.planner`):
given the time, the last acknowledged heartbeat, each modem's health and the
history of attempts, it names the next step, a wait, or nothing. This module
is the thin part around it:

* **health**, read from the daemon: can the modem carry the heartbeat (its
  data path is usable, its last heartbeat was not lost, its AT port is not
  wedged or gone), does its AT port answer, which capabilities it has (a
  netifd interface to ``ifup``, a USB device to re-authorise, reset and
  power lines);
* **steps**, one task per modem at most, each logged with the grace left:
  ``reroute`` (the heartbeat to the other modem), ``ifup``, ``radio_cycle``
  (``AT+CFUN`` off and on), ``soft_reset`` (the vendor's AT reset),
  ``usb_reauth`` (sysfs ``authorized`` 0 then 1; a root-hub port is never
  disabled), ``gpio_reset`` (the reset line's pulse) and ``power_cycle``;
* **judging** a step: it worked when the modem can carry the heartbeat again
  within the step's expected time (a heartbeat over it is asked for as soon
  as it is registered again); the time it took teaches the cost model;
* the IoT modem's SIM line is put back on its local SIM after every step
  that resets it;
* **the heartbeat's own schedule**: no attempt for longer than interval +
  timeout is a fault of its own, whatever the modems' health: logged, shown
  as ``heartbeat.schedule_fault``, and a heartbeat asked for at once. A
  server that answers without acknowledging is not a modem's fault: the
  heartbeat reports it (``grace.at_risk``) and no step is taken for it.

``status`` shows the latest steps under ``recoveries``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remsim_supervisor.core.cadence import schedule_fault
from remsim_supervisor.adapters.gpio import power_cycle
from remsim_supervisor.core import machine as m
from remsim_supervisor.supervisor.lines import sim_level
from remsim_supervisor.core.planner import Attempt, CostModel, ModemHealth, Step, Wait, plan
from remsim_supervisor.adapters.serialport import AtTimeout, PortError

if TYPE_CHECKING:
    from remsim_supervisor.supervisor.daemon import Daemon

log = logging.getLogger("remsim_supervisor.supervisor.guardian")

TICK_S = 1.0
POWER_OFF_MS = 2000
HISTORY_S = 2 * 3600.0
# A modem that carried the heartbeat counts as down once it has been unable to
# for this long: a reboot, a re-probe or one lost heartbeat is not an incident.
SETTLE_S = 15.0
# With no path at all, modems that never worked are worked on only after the
# daemon has given them this long to come up (a cold boot takes a minute).
STARTUP_S = 60.0


class Guardian:
    def __init__(self, daemon: Daemon, clock: Any = time.monotonic) -> None:
        self.d = daemon
        self.clock = clock
        esc = daemon.config.escalation
        self.costs = CostModel(overrides={(model, rung): s for model, rung, s in esc.step_costs})
        self.history: list[Attempt] = []
        self.running: dict[str, asyncio.Task[None]] = {}
        self.down_since: dict[str, float] = {}
        self.seen_ok: set[str] = set()
        self.started = clock()
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self._wake = asyncio.Event()
        self._last_wait: str | None = None

    def poke(self) -> None:
        self._wake.set()

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
        for name, runner in self.d.runners.items():
            state = runner.facts.state
            carries = self.d.heartbeat.modem_ok(name) and state not in ("failed", "absent")
            if carries:
                self.seen_ok.add(name)
                self.down_since.pop(name, None)
            else:
                self.down_since.setdefault(name, now)
            views.append((name, runner, carries))
        stranded = not any(carries for _n, _r, carries in views) and now - self.started >= STARTUP_S
        out = []
        for name, runner, carries in views:
            if not carries:
                settled = now - self.down_since[name] >= SETTLE_S
                if not ((name in self.seen_ok and settled) or stranded):
                    continue
            cfg = runner.cfg
            caps = set(self.d.lines[name].capabilities) if name in self.d.lines else set()
            if cfg.interface and shutil.which(self._ifup_command()[0]):
                caps.add("interface")
            if self._authorized_file(name) is not None:
                caps.add("usb")
            out.append(
                ModemHealth(
                    name=name,
                    role=cfg.role,
                    model=runner.facts.profile or cfg.model,
                    heartbeat_ok=carries,
                    capabilities=frozenset(caps),
                    at_responsive=runner.channel is not None and runner.facts.state != "failed",
                    down_since=None if carries else self.down_since[name],
                )
            )
        return out

    def _authorized_file(self, name: str) -> Path | None:
        runner = self.d.runners[name]
        found = runner.found
        if found is None or not found.sysfs_device:
            return None
        path = Path(found.sysfs_device) / "authorized"
        return path if path.exists() else None

    def _ifup_command(self) -> list[str]:
        return (os.environ.get("REMSIM_SUPERVISOR_IFUP") or "ifup").split()

    # -- the loop ----------------------------------------------------------------------

    def watch_schedule(self, now: float) -> str | None:
        """Is the heartbeat behind its own schedule? Says so once, and asks for one now."""
        hb = self.d.heartbeat
        fault = schedule_fault(now, hb.last_attempt_end, hb.in_flight_since, hb.interval,
                               self.d.config.ionmesh.timeout)
        if fault is not None:
            if hb.schedule_fault is None:
                log.error("the heartbeat is behind its schedule: %s (%.0f s of grace left); "
                          "sending one now", fault, self.grace_left())
            hb.note_schedule_fault(fault)
        elif hb.schedule_fault is not None:
            log.info("the heartbeat is back on its schedule")
            hb.note_schedule_fault(None)
        return fault

    async def run(self) -> None:
        while True:
            now = self.clock()
            self.watch_schedule(now)
            self.history = [a for a in self.history if a.ended is None or now - a.ended < HISTORY_S]
            decision = plan(
                now=now,
                last_ack=self._last_ack(),
                grace_s=self.d.config.supervisor.grace_period,
                margin_s=self.d.config.escalation.margin,
                modems=self.health(),
                history=self.history,
                costs=self.costs,
                max_resets_per_hour=self.d.config.escalation.max_resets_per_hour,
                path=self.d.heartbeat.path.active,
            )
            timeout = TICK_S
            if isinstance(decision, Step) and decision.modem not in self.running:
                self._start(decision)
                continue  # the other modem may need a step of its own
            if isinstance(decision, Wait):
                timeout = max(0.1, min(TICK_S, decision.until - now))
                if decision.reason != self._last_wait:
                    log.info("holding back: %s", decision.reason)
                    self._last_wait = decision.reason
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        if self.running:
            await asyncio.wait(set(self.running.values()), timeout=1.0)

    def _last_ack(self) -> float:
        hb = self.d.heartbeat
        return hb.last_ack if hb.last_ack is not None else hb.started

    def grace_left(self) -> float:
        return float(self.d.heartbeat.grace(self.clock())["remaining_s"])

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
        runner = self.d.runners.get(step.modem)
        role = runner.cfg.role if runner else "?"
        log.warning(
            "%s (%s): recovery step %s%s, expected %.0f s, %.0f s of grace left: %s",
            step.modem,
            role,
            step.rung,
            " (best effort)" if step.best_effort else "",
            step.expected_s,
            self.grace_left(),
            step.reason,
        )
        self.running[step.modem] = asyncio.create_task(
            self._run_step(step, attempt, record), name=f"recovery {step.modem}"
        )

    async def _run_step(self, step: Step, attempt: Attempt, record: dict[str, Any]) -> None:
        runner = self.d.runners.get(step.modem)
        ok = False
        try:
            if runner is not None and step.rung != "reroute":
                runner.apply(m.RecoveryStarted(step.rung))
            done = await self._do(step)
            if runner is not None and step.rung != "reroute":
                runner.apply(m.RecoveryEnded(step.rung, done))
            ok = done and await self._recovered(step, attempt.started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s: recovery step %s failed: %s", step.modem, step.rung, exc)
        finally:
            if runner is not None and runner.facts.recovering is not None:
                runner.apply(m.RecoveryEnded(step.rung, ok))
            ended = self.clock()
            self.history = [
                Attempt(a.modem, a.rung, a.started, ended, ok) if a is attempt else a
                for a in self.history
            ]
            self.running.pop(step.modem, None)
            record["result"] = "ok" if ok else "failed"
            record["took_s"] = round(ended - attempt.started, 1)
            if ok and runner is not None:
                self.costs = self.costs.observe(
                    runner.facts.profile or runner.cfg.model, step.rung, ended - attempt.started
                )
            log.log(
                logging.INFO if ok else logging.WARNING,
                "%s: recovery step %s %s after %.0f s, %.0f s of grace left",
                step.modem,
                step.rung,
                "worked" if ok else "did not help",
                ended - attempt.started,
                self.grace_left(),
            )
            self.poke()

    async def _do(self, step: Step) -> bool:
        """Carry out the step's action; True when the action itself went through."""
        name, rung = step.modem, step.rung
        runner = self.d.runners[name]
        cfg = runner.cfg
        if rung == "reroute":
            return await self.d.heartbeat.reroute(name, step.reason)
        if rung == "ifup":
            return await self._ifup(cfg.interface or "")
        profile = runner.profile
        if rung in ("radio_cycle", "soft_reset"):
            if profile is None:
                return False
            try:
                if rung == "radio_cycle":
                    off = await runner.at(profile.radio_off, profile.timings.radio_cycle_s)
                    await asyncio.sleep(2.0)
                    on = await runner.at(profile.radio_on, profile.timings.radio_cycle_s)
                    return off.ok and on.ok
                reset = await runner.at(profile.soft_reset, profile.timings.soft_reset_answer_s)
                return reset.ok
            except (AtTimeout, PortError, ValueError) as exc:
                log.warning("%s: %s: %s", name, rung, exc)
                return False
        if rung == "usb_reauth":
            return await self._usb_reauth(name)
        if rung == "gpio_reset":
            return await self.d.reset_modem(name, step.reason)
        if rung == "power_cycle":
            lines = self.d.lines.get(name)
            if lines is None or lines.power is None:
                return False
            await power_cycle(lines.power, POWER_OFF_MS)
            if cfg.role == "iot" and lines.sim is not None:
                lines.sim.set(sim_level(cfg, remote=False))
            return True
        log.error("%s: unknown recovery step %r", name, rung)
        return False

    async def _ifup(self, interface: str) -> bool:
        argv = [*self._ifup_command(), interface]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _out, err = await asyncio.wait_for(proc.communicate(), 30.0)
        except (TimeoutError, OSError) as exc:
            log.warning("%s failed: %s", " ".join(argv), exc)
            return False
        if proc.returncode != 0:
            log.warning(
                "%s exited with %s: %s",
                " ".join(argv),
                proc.returncode,
                err.decode(errors="replace").strip()[:200],
            )
        return proc.returncode == 0

    async def _usb_reauth(self, name: str) -> bool:
        path = self._authorized_file(name)
        if path is None:
            return False
        try:
            # Re-authorising the device makes the kernel re-enumerate it, which
            # revives a modem whose AT/QMI services stopped answering. Never a
            # root-hub port: that can leave the bus unable to enumerate.
            path.write_text("0")
            await asyncio.sleep(1.0)
            path.write_text("1")
        except OSError as exc:
            log.warning("%s: USB re-authorisation through %s failed: %s", name, path, exc)
            return False
        return True

    async def _recovered(self, step: Step, started: float) -> bool:
        """Wait, up to the step's expected time, for a heartbeat over the modem to be acked."""
        deadline = self.clock() + max(step.expected_s, 5.0)
        asked = False
        runner = self.d.runners.get(step.modem)
        while self.clock() < deadline:
            if self.d.heartbeat.acked_over_since(step.modem, started):
                return True
            if (
                not asked
                and runner is not None
                and runner.facts.state in ("registered", "connected")
            ):
                # Back on the network: prove it with a heartbeat now, not an interval later.
                self.d.heartbeat.beat_now()
                asked = True
            await asyncio.sleep(0.25)
        return False

    async def on_demand(self, name: str, rung: str, timeout: float | None = None) -> dict[str, Any]:
        """``modem NAME reset --level RUNG``: one step now, and whether the modem came back.

        It came back when its owner task has it registered (or connected)
        again, after the step, within the step's expected time (or
        ``timeout``). A step of the guardian already running on the modem
        is not doubled.
        """
        runner = self.d.runners[name]
        if name in self.running:
            return {"ok": False, "error": f"{name} is in a recovery step already; try later"}
        model = runner.facts.profile or runner.cfg.model
        expected = timeout or self.costs.expected(model, rung)
        step = Step(modem=name, rung=rung, reason="asked for on the command line",
                    expected_s=expected, grace_left_s=self.grace_left(), urgent=False)
        log.warning("%s (%s): recovery step %s on demand, %.0f s of grace left", name,
                    runner.cfg.role, rung, self.grace_left())
        started = self.clock()
        runner.apply(m.RecoveryStarted(rung))
        try:
            done = await self._do(step)
        finally:
            runner.apply(m.RecoveryEnded(rung, True))
        if not done:
            return {"ok": True, "came_back": False, "state": runner.facts.state,
                    "message": f"the {rung} step could not be carried out (see logread)"}
        # The modem first drops (a reset takes its port away), then comes back.
        await asyncio.sleep(min(2.0, expected / 4))
        deadline = started + expected
        while self.clock() < deadline:
            if runner.facts.state in ("registered", "connected"):
                took = self.clock() - started
                log.info("%s: %s on demand: back after %.0f s", name, rung, took)
                return {"ok": True, "came_back": True, "state": runner.facts.state,
                        "took_s": round(took, 1)}
            await asyncio.sleep(0.25)
        return {"ok": True, "came_back": False, "state": runner.facts.state,
                "message": f"{name} is {runner.facts.state} {expected:.0f} s after {rung}"}

    def status(self) -> list[dict[str, Any]]:
        return list(self.recent)
