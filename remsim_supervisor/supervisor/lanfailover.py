"""The LAN failover policy at work: facts gathered, the choice carried out.

Off unless ``config lan`` says ``option enabled 1`` (docs/lan-failover.md).
Then the LAN's default route follows the first usable uplink of
``list uplink`` (a WAN device, the primary modem, the IoT modem, by name or
role), as :func:`remsim_supervisor.core.uplinks.choose` decides from:

* **link events** from rtnetlink, handed in by the daemon
  (:meth:`LanFailover.links_changed`): a link going down moves the LAN at
  once, without waiting for anything else (milliseconds);
* **a modem's registration**, from its owner task's status;
* **probes** (``list probe``) every ``probe_interval`` through each uplink's
  own table (:mod:`remsim_supervisor.adapters.probe`), so the preferred
  uplink is tested while the LAN is on another; ``probe_failures`` rounds
  unanswered in a row fail an uplink that is up but silent (seconds), as
  does a failed heartbeat over a modem (:meth:`LanFailover.heartbeat_failed`).
  The IoT modem is probed only while it carries the LAN or would have to;
* **the IoT modem's daily cap** (``iot_daily_cap_mb``), counted from its
  interface's byte counters, the day from the wall clock.

Failback waits ``failback_hold`` seconds of a preferred uplink being usable.
On a move the LAN's route is replaced first, then the conntrack entries of
the flows masqueraded out of the old uplink are deleted
(:mod:`remsim_supervisor.adapters.lanconntrack`), so LAN clients reconnect
through the new one at once. Where mwan3 runs, nothing is touched and status
says so; the check is repeated every :data:`MWAN3_CHECK_S`.

Two tasks under :meth:`LanFailover.run`: the probe rounds and the kernel
writer, which wakes on every new choice. A reload that changes the section
(:meth:`LanFailover.configure`) clears the kernel and starts them again with
it. Clock and wall clock are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from remsim_supervisor.adapters.lanconntrack import cut_over
from remsim_supervisor.adapters.lanroutes import LanKernel, mwan3_reason
from remsim_supervisor.adapters.probe import probe
from remsim_supervisor.adapters.routing import PathSpec, RoutingError
from remsim_supervisor.adapters.serialport import in_daemon_thread
from remsim_supervisor.config.types import LanConfig
from remsim_supervisor.core import uplinks as up
from remsim_supervisor.supervisor.usage import ModemView

log = logging.getLogger("remsim_supervisor.supervisor.lanfailover")

MWAN3_CHECK_S = 30.0
KERNEL_TIMEOUT_S = 5.0
CUT_OVER_TIMEOUT_S = 3.0
REGISTERED = ("registered", "connected")
MB = 1_000_000


@dataclass
class Uplink:
    """One configured uplink and what was last learned of it."""

    name: str
    kind: str = "device"  # "device", "primary", "iot"
    device: str | None = None
    link: bool | None = None
    addresses: tuple[str, ...] = ()
    registered: bool | None = None
    path: PathSpec | None = None
    record: up.ProbeRecord = field(default_factory=up.ProbeRecord)
    usage: up.DailyUsage = field(default_factory=up.DailyUsage)


class LanFailover:
    def __init__(self, config: LanConfig, modems: Callable[[], list[ModemView]], *,
                 pins: Callable[[], Iterable[str]] = lambda: (),
                 kernel: LanKernel | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 prober: Callable[..., bool] = probe,
                 mwan3: Callable[[list[str]], str | None] = lambda rules: mwan3_reason(
                     rules=rules)) -> None:
        self.config = config
        self.modems = modems
        self.pins = pins
        self.clock = clock
        self.wall = wall
        self.prober = prober
        self.mwan3_check = mwan3
        self._kernel = kernel  # given (tests); else one is made per configuration
        self.kernel: LanKernel | None = kernel
        self._next: LanConfig | None = None
        self._reconfigured = asyncio.Event()
        self.uplinks = [Uplink(name) for name in config.uplinks]
        self.choice = up.Choice()
        self.mwan3: str | None = None
        self.running = False
        self.moves = 0
        self.last_move: dict[str, Any] | None = None
        self.flows_cut = 0
        self._written: str | None = None  # the uplink whose route the kernel holds
        self._probe_paths: list[PathSpec | None] | None = None  # what the probe tables hold
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()

    # -- events from the daemon -----------------------------------------------------------

    def links_changed(self, name: str, is_up: bool) -> None:
        """A link event: the LAN moves now if its uplink went down."""
        if not self.running:
            return
        self._sync_modems()
        hit = False
        for uplink in self.uplinks:
            if uplink.device == name:
                uplink.link = is_up
                hit = True
        if hit:
            self._decide(f"link {name} {'up' if is_up else 'down'}")
            if is_up:
                self._wake.set()  # its address and gateway are learned by a read

    def heartbeat_failed(self, modem: str) -> None:
        """A heartbeat over a modem went unanswered: one failed round for its uplink."""
        if not self.running:
            return
        self._sync_modems()
        for uplink in self.uplinks:
            if uplink.kind in up.MODEM_KINDS and modem in (uplink.name, self._modem_name(uplink)):
                uplink.record = up.probe_round(uplink.record, False,
                                               self.config.probe_failures,
                                               self.config.probe_failures)
        self._decide(f"heartbeat over {modem} failed")

    # -- the tasks ------------------------------------------------------------------------

    def configure(self, config: LanConfig) -> None:
        """A reload: a changed section starts the policy again with it (off: cleared)."""
        if config != self.config:
            self._next = config
            self._reconfigured.set()

    async def run(self) -> None:
        while True:
            if self.config.enabled:
                await self._run_enabled()
            else:
                await self._reconfigured.wait()
            self._reconfigured.clear()
            if self._next is not None:
                self.config, self._next = self._next, None
                self.uplinks = [Uplink(name) for name in self.config.uplinks]
                self.choice, self.mwan3 = up.Choice(), None
                log.info("lan: configuration applied (%s)",
                         "on" if self.config.enabled else "off")

    async def _run_enabled(self) -> None:
        """The two tasks until a reload changes the section; then the kernel is cleared."""
        c = self.config
        kernel = self._kernel or LanKernel(c.table, c.priority, c.probe_mark, len(self.uplinks))
        self.kernel = kernel
        self.running = True
        tasks = {asyncio.create_task(self._rounds(), name="lan probe rounds"),
                 asyncio.create_task(self._writer(), name="lan route writer")}
        waiter = asyncio.create_task(self._reconfigured.wait())
        try:
            done, _ = await asyncio.wait(tasks | {waiter}, return_when=asyncio.FIRST_COMPLETED)
            for task in done & tasks:
                task.result()  # a bug: raised, and the daemon restarts the task
        finally:
            self.running = False
            for task in tasks | {waiter}:
                task.cancel()
            await asyncio.wait(tasks | {waiter})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(in_daemon_thread(kernel.clear), KERNEL_TIMEOUT_S)
            if self._kernel is None:
                kernel.close()  # its netlink sockets; the next configuration opens its own
            self._written, self._probe_paths = None, None

    async def _rounds(self) -> None:
        next_mwan3 = 0.0
        while True:
            started = self.clock()
            if self.clock() >= next_mwan3:
                await self._check_mwan3()
                next_mwan3 = self.clock() + MWAN3_CHECK_S
            if self.mwan3 is None:
                await self._refresh()
                self._decide("refresh")
                await self._write_probe_tables()
                await self._probe_round()
                self._decide("probes")
            self._wake.clear()
            # Rounds start every probe_interval, however long the last one took.
            wait = max(0.0, self.config.probe_interval - (self.clock() - started))
            failback = self.choice.failback_in(self.clock(), self.config.failback_hold)
            if failback is not None:  # decide again as soon as the hold is over
                wait = min(wait, failback + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _writer(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.mwan3 is None:
                await self._write()

    # -- gathering facts ------------------------------------------------------------------

    def _modem_name(self, uplink: Uplink) -> str | None:
        for view in self.modems():
            if uplink.name in (view.name, view.role):
                return view.name
        return None

    def _sync_modems(self) -> None:
        """Modem uplinks: the data device and the registration, from the owner tasks."""
        views = self.modems()
        for uplink in self.uplinks:
            view = next((v for v in views if uplink.name in (v.name, v.role)), None)
            if view is None:
                uplink.kind, uplink.device = "device", uplink.name
                continue
            uplink.kind = view.role
            if uplink.device != view.device:
                uplink.device, uplink.link, uplink.path = view.device, None, None
            uplink.registered = view.status.get("state") in REGISTERED

    async def _refresh(self) -> None:
        self._sync_modems()
        assert self.kernel is not None
        kernel, day = self.kernel, self._day()

        def read() -> list[tuple[Any, PathSpec | None, int | None]]:
            devices = [u.device for u in self.uplinks if u.device is not None]
            seen = kernel.read(devices) if devices else {}
            out: list[tuple[Any, PathSpec | None, int | None]] = []
            for uplink in self.uplinks:
                if uplink.device is None:
                    out.append((None, None, None))
                    continue
                state, gateway = seen[uplink.device]
                path = PathSpec(uplink.name, uplink.device, gateway) if state.exists else None
                counter = kernel.counter(uplink.device) if uplink.kind == "iot" else None
                out.append((state, path, counter))
            return out

        try:
            found = await asyncio.wait_for(in_daemon_thread(read), KERNEL_TIMEOUT_S)
        except (RoutingError, TimeoutError) as exc:
            log.warning("lan: cannot read the uplinks: %s", exc or "timed out")
            return
        for uplink, (state, path, counter) in zip(self.uplinks, found):
            if state is None:
                uplink.link, uplink.addresses, uplink.path = None, (), None
                continue
            uplink.link = state.up
            uplink.addresses = state.ipv4
            uplink.path = path
            if uplink.kind == "iot":
                uplink.usage = up.count_usage(uplink.usage, day, counter)

    async def _probe_round(self) -> None:
        targets = self.config.probes
        if not targets:
            return
        chosen = [(n, u) for n, u in enumerate(self.uplinks, 1) if self._worth_probing(u)]
        if not chosen:
            return
        assert self.kernel is not None
        kernel, timeout = self.kernel, self.config.probe_timeout

        async def one(n: int, uplink: Uplink, target: str) -> bool:
            device = uplink.device or ""
            try:
                return await asyncio.wait_for(in_daemon_thread(
                    lambda: self.prober(target, mark=kernel.mark(n), device=device,
                                        timeout=timeout)), timeout + 1.0)
            except TimeoutError:
                return False

        answers = await asyncio.gather(*(one(n, u, t) for n, u in chosen for t in targets))
        for i, (_n, uplink) in enumerate(chosen):
            answered = any(answers[i * len(targets):(i + 1) * len(targets)])
            before = uplink.record.verdict
            uplink.record = up.probe_round(uplink.record, answered, self.config.probe_failures,
                                           self.config.probe_failures)
            if uplink.record.verdict != before and uplink.record.verdict is not None:
                log.info("lan: probes through %s (%s) %s", uplink.name, uplink.device,
                         "answered again" if uplink.record.verdict else "unanswered")

    def _worth_probing(self, uplink: Uplink) -> bool:
        if uplink.device is None or not uplink.link or not uplink.addresses:
            return False
        if uplink.kind != "iot":
            return True
        # The IoT modem's bytes count against its cap: probe it only when needed.
        others = [u for u in self._facts() if u.kind != "iot"]
        return self.choice.active == uplink.name or all(up.problem(f) for f in others)

    def _day(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.wall()))

    def _facts(self) -> list[up.UplinkFacts]:
        day = self._day()
        cap = self.config.iot_daily_cap_mb
        return [up.UplinkFacts(
            name=u.name, kind=u.kind, device=u.device, link=u.link,
            address=bool(u.addresses), registered=u.registered if u.kind != "device" else None,
            probe=u.record.verdict,
            budget_left=up.budget_left(int(cap * MB) if cap else None, u.usage, day)
            if u.kind == "iot" else None) for u in self.uplinks]

    # -- deciding and writing -------------------------------------------------------------

    def _decide(self, trigger: str) -> None:
        before = self.choice
        self.choice = up.choose(self._facts(), before, self.clock(), self.config.failback_hold)
        if self.choice.active != before.active:
            self.moves += 1
            self.last_move = {"from": before.active, "to": self.choice.active,
                              "reason": self.choice.reason, "trigger": trigger,
                              "at": self.clock()}
            log.warning("lan: default route %s -> %s: %s", before.active or "main table",
                        self.choice.active or "main table", self.choice.reason)
            self._dirty.set()

    async def _write(self) -> None:
        assert self.kernel is not None
        active = next((u for u in self.uplinks if u.name == self.choice.active), None)
        spec = None
        if active is not None and active.device is not None:
            spec = active.path or PathSpec(active.name, active.device, None)
        previous = next((u for u in self.uplinks if u.name == self._written), None)
        started = self.clock()
        try:
            await asyncio.wait_for(in_daemon_thread(self.kernel.apply, spec), KERNEL_TIMEOUT_S)
        except (RoutingError, TimeoutError) as exc:
            log.error("lan: cannot set the LAN's route: %s", exc or "timed out")
            self._written = None
            return
        moved = self._written != (active.name if active else None)
        self._written = active.name if active else None
        if moved:
            log.info("lan: default route via %s in table %d (%.1f ms)",
                     spec.device if spec else "the main table", self.config.table,
                     (self.clock() - started) * 1000)
        if moved and previous is not None and previous.addresses:
            await self._cut_over(previous)

    async def _write_probe_tables(self) -> None:
        """Each uplink's probe table follows the gateway just read (empty while it is down)."""
        assert self.kernel is not None
        paths = [u.path if u.link and u.path is not None else None for u in self.uplinks]
        if paths == self._probe_paths:
            return  # as the kernel holds them (they are reconciled, not assumed, on a change)
        try:
            problems = await asyncio.wait_for(
                in_daemon_thread(self.kernel.apply_probes, paths), KERNEL_TIMEOUT_S)
        except (RoutingError, TimeoutError) as exc:
            log.warning("lan: cannot set the probe tables: %s", exc or "timed out")
            return
        for problem in problems:
            log.debug("lan: probe table: %s", problem)
        self._probe_paths = None if problems else paths

    async def _cut_over(self, previous: Uplink) -> None:
        keep = list(self.pins())
        try:
            cut = await asyncio.wait_for(
                in_daemon_thread(cut_over, previous.addresses, keep), CUT_OVER_TIMEOUT_S)
        except (RoutingError, TimeoutError) as exc:
            log.warning("lan: could not cut the flows of %s over: %s", previous.name,
                        exc or "timed out")
            return
        self.flows_cut += cut
        if cut:
            log.info("lan: cut over %d LAN flow(s) from %s", cut, previous.name)

    async def _check_mwan3(self) -> None:
        assert self.kernel is not None
        kernel = self.kernel

        def look() -> str | None:
            try:
                rules = kernel.mwan3_rules()
            except RoutingError:
                rules = []
            return self.mwan3_check(rules)

        try:
            reason = await asyncio.wait_for(in_daemon_thread(look), KERNEL_TIMEOUT_S)
        except TimeoutError:
            return
        if reason and self.mwan3 is None:
            log.warning("lan: mwan3 runs here (%s): the LAN is left to it", reason)
            with contextlib.suppress(RoutingError, TimeoutError):
                await asyncio.wait_for(in_daemon_thread(kernel.clear), KERNEL_TIMEOUT_S)
            self._written, self._probe_paths = None, None
        elif not reason and self.mwan3 is not None:
            log.info("lan: mwan3 no longer runs: the LAN failover policy takes over")
        self.mwan3 = reason

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.config
        if not c.enabled:
            return {"enabled": False, "state": "off"}
        now = self.clock()
        if self.mwan3 is not None:
            state = "left to mwan3"
        elif not self.running:
            state = "starting"
        else:
            state = "active" if self.choice.active else "no usable uplink"
        active = next((u for u in self.uplinks if u.name == self.choice.active), None)
        cap = c.iot_daily_cap_mb
        day = self._day()
        uplinks = []
        for u, f in zip(self.uplinks, self._facts()):
            entry: dict[str, Any] = {"name": u.name, "kind": u.kind, "device": u.device,
                                     "usable": up.problem(f) is None, "problem": up.problem(f),
                                     "probe": u.record.verdict}
            if u.kind == "iot":
                entry["used_today_mb"] = round(
                    (u.usage.used if u.usage.day == day else 0) / MB, 3)
                entry["cap_mb"] = cap
            uplinks.append(entry)
        last = dict(self.last_move) if self.last_move else None
        if last is not None:
            last["age_s"] = round(now - last.pop("at"), 1)
        return {
            "enabled": True,
            "state": state,
            "mwan3": self.mwan3,
            "active": self.choice.active,
            "device": active.device if active else None,
            "reason": self.choice.reason,
            "failback_to": self.choice.waiting,
            "failback_in_s": _round(self.choice.failback_in(now, c.failback_hold)),
            "moves": self.moves,
            "last_move": last,
            "flows_cut": self.flows_cut,
            "uplinks": uplinks,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


__all__ = ["LanFailover"]
