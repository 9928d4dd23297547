"""The daemon: builds the parts, wires their events, and owns every task.

``remsim-supervisor run`` builds a :class:`Daemon` from a validated
configuration and runs it in the foreground until SIGTERM/SIGINT (procd's
stop). The parts:

* the modems (:class:`~remsim_supervisor.supervisor.modems.Modems`): one
  owner task per modem and its GPIO lines, and the one implementation of
  :class:`~remsim_supervisor.supervisor.actions.ModemActions`, which the
  guardian, the SIM switcher and the control socket's ``reset`` act through;
* the heartbeat, the guardian (handed the modems' actions and the
  heartbeat's facts, never the daemon), the osmo-remsim event consumer, the
  publisher and the notifier;
* the rtnetlink link monitor and the control socket
  (:class:`~remsim_supervisor.supervisor.requests.ControlServer`), which
  answers ``status`` from memory, so a wedged modem never slows it down.

The daemon passes events on: a link change to the modems, the heartbeat and
the guardian; a heartbeat failure, a path move and a modem's state change to
the guardian (which wakes on them, see :mod:`~remsim_supervisor.supervisor.guardian`).

Every task runs in one :class:`asyncio.TaskGroup`, each long-lived one
inside :meth:`Daemon._keep` (a bug is logged and the task restarted, not the
daemon); short side tasks (a reload from SIGHUP, a netifd question, a line
retried) join the same group, so shutdown leaves nothing behind.

Signals:

* SIGTERM / SIGINT: orderly stop within :data:`STOP_BUDGET_S`: the guardian
  and its steps first, then the heartbeat (unregister, remove its routes),
  then every other task; ports are closed in the background (a tty whose
  close blocks is abandoned), the control socket removed.
* SIGHUP: reload. The file is validated first; a broken file is logged line
  by line and *nothing* changes. A valid one restarts only the modems whose
  section changed, and applies the new log level. Reloads run one at a time,
  whether from SIGHUP or the control socket.

Test and lab hooks come from the environment, never from the configuration
file: the daemon reads them once, at start, as an
:class:`~remsim_supervisor.config.env.Environment` (the roots for discovery,
the lock and state directories, the poll interval, ``ifup``, ``ubus``, the
event settle window) and hands each part what it needs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from remsim_supervisor import __version__
from remsim_supervisor import log as logsetup
from remsim_supervisor.adapters.discovery import Discovery
from remsim_supervisor.adapters.netlink import LinkMonitor
from remsim_supervisor.adapters.notify import Notifier, Watcher, route_device
from remsim_supervisor.adapters.serialport import in_daemon_thread
from remsim_supervisor.config import Config, ConfigError, ModemConfig, load
from remsim_supervisor.config.env import Environment
from remsim_supervisor.supervisor.actions import HeartbeatView
from remsim_supervisor.supervisor.guardian import Guardian, GuardianSettings
from remsim_supervisor.supervisor.heartbeat import HeartbeatService, ModemView
from remsim_supervisor.supervisor.hooklisten import listener_for
from remsim_supervisor.supervisor.hostservice import HostService
from remsim_supervisor.supervisor.lanfailover import LanFailover
from remsim_supervisor.supervisor.lines import (
    ModemLines,
    fill_missing,
    missing_lines,
    open_modem_lines,
)
from remsim_supervisor.supervisor.modem import ModemRunner, RunnerSettings
from remsim_supervisor.supervisor.modems import Modems, WatchedRunner
from remsim_supervisor.supervisor.publish import STATUS_FILE, Publisher
from remsim_supervisor.supervisor.requests import ControlServer, Handlers, StartupError
from remsim_supervisor.supervisor.simswitch import SimSwitcher
from remsim_supervisor.supervisor.statusview import mask_identifiers

__all__ = ["STOP_BUDGET_S", "Daemon", "StartupError", "run_daemon", "runner_settings"]

log = logging.getLogger("remsim_supervisor.supervisor.daemon")

STOP_BUDGET_S = 3.0
RESTART_S = 5.0  # a task that failed with a bug starts again after this
NETIFD_TIMEOUT_S = 5.0  # ubus naming an interface's device


def runner_settings(env: Environment) -> RunnerSettings:
    return RunnerSettings(poll_interval=env.poll_interval, lock_dir=env.lock_dir)


class Daemon:
    def __init__(self, config: Config, environ: Mapping[str, str] | None = None, *,
                 environment: Environment | None = None) -> None:
        env = environment or Environment.from_environ(os.environ if environ is None else environ)
        self.config = config
        self.environment = env
        self.discovery = Discovery(sysfs_root=env.sysfs, dev_root=env.dev)
        self.settings = runner_settings(env)
        self.modems = Modems(self._reroute, on_change=self._modem_changed)
        self.dynamic_pins: dict[str, str] = {}  # "bankd"/"server" -> host, from osmo-remsim
        self.state_dir = env.state_dir
        self.heartbeat = HeartbeatService(config, self._modem_views, state_dir=self.state_dir)
        self.heartbeat.on_failure = self._heartbeat_failed
        self.heartbeat.on_move = self._path_moved
        self.lan = LanFailover(config.lan, self._modem_views, pins=lambda: (
            p["address"] for p in self.heartbeat.keeper.pins() if p["address"]))
        self.guardian = Guardian(self.modems, HeartbeatView(self.heartbeat),
                                 self._guardian_settings(config), spawn=self._spawn_named)
        self.sims = SimSwitcher(
            set_sim=self.set_primary_sim,
            get_sim=self.primary_sim_remote,
            reset_modem=lambda reason: self.modems.reset(self._primary_name(), reason),
            pin=self.pin_dynamic,
            settle_s=env.event_settle,
        )
        self.links = LinkMonitor(self._link_changed, on_address=lambda name: (
            self.heartbeat.keeper.address_event(name)))  # an IPv6 address by RA, say
        self.started = time.monotonic()
        self.hotplug_events = 0
        self._stop = asyncio.Event()
        self._reloading = asyncio.Lock()  # SIGHUP and the control socket's reload, one at a time
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # the group's, while they run
        self._modem_tasks: dict[str, asyncio.Task[None]] = {}  # for a reload to stop one
        self.control = ControlServer(config.supervisor.control_socket, Handlers(
            status=self.status, modems=self.modems, reset=self.guardian.on_demand,
            event=self.sims.submit, reload=self.reload, hotplug=self.hotplug))
        self.hooks = listener_for(env.ubus, env.ubus_socket, config.supervisor.control_socket,
                                  on_event=self.sims.submit, on_hotplug=self.hotplug)
        self.host = HostService(  # systemd's notifications, the in-process USB monitor
            os.environ if environ is None else environ,
            lambda subsystem, env: self.hotplug({"subsystem": subsystem, "env": env}),
            self.status)
        self.notifier = Notifier(None)
        self.publisher = Publisher(
            self.status, status_file=os.path.join(self.state_dir, STATUS_FILE),
            metrics_file=None, watcher=Watcher(0), notifier=self.notifier,
            mask=mask_identifiers)
        self.heartbeat.usage.on_record = self.publisher.poke  # an acknowledged heartbeat
        self._configure_owner_view(config)

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        await self.control.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        try:
            self.links.start()
        except OSError as exc:
            log.warning("no netlink link monitor (%s): modems stop at 'registered'", exc)
        self.host.start(self.config)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for modem in self.config.modems:
                    self._start_modem(modem)
                self._spawn(self._keep(self.sims.run, "osmo-remsim events"), "osmo-remsim events")
                if self.hooks is not None:  # after the control socket: it is the fallback
                    self._spawn(self._keep(self.hooks.run, "hook listener"), "hook listener")
                self._spawn(self._keep(self.publisher.run, "status publisher"), "status publisher")
                self._spawn(self._keep(self.notifier.run, "notifications"), "notifications")
                heartbeat = self._spawn(self._keep(self.heartbeat.run, "heartbeat"), "heartbeat")
                self._spawn(self._keep(self.lan.run, "lan failover"), "lan failover")
                guardian = None
                if self.config.escalation.enabled:
                    guardian = self._spawn(self._keep(self.guardian.run, "guardian"), "guardian")
                else:
                    log.warning("automatic recovery is off (escalation.enabled is 0): modems "
                                "are watched, never reset")
                log.info("remsim-supervisor %s running: %s", __version__,
                         ", ".join(f"{mc.name} ({mc.role})" for mc in self.config.modems))
                self._spawn(self._keep(self.host.run, "systemd notifications"), "systemd")
                await self._stop.wait()
                self.host.stopping()
                await self._stop_tasks(group, heartbeat, guardian)
        finally:
            self._group = None
            await self._release()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _reload_on_signal(self) -> None:
        if self._group is not None and not self._stop.is_set():
            self._spawn(self.reload(), "reload")

    async def _stop_tasks(self, group: asyncio.TaskGroup, heartbeat: asyncio.Task[None],
                          guardian: asyncio.Task[None] | None) -> None:
        """Cancel every task of the group within STOP_BUDGET_S: the guardian and its
        steps first, then the heartbeat (unregister, remove its routes), then the rest."""
        log.info("stopping")
        end = time.monotonic() + STOP_BUDGET_S
        if guardian is not None:
            guardian.cancel()
            await self.guardian.stop()
        heartbeat.cancel()
        await asyncio.wait({heartbeat}, timeout=0.5)
        await self.heartbeat.stop(budget_s=1.5)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=max(0.1, end - time.monotonic()))
            for task in pending:
                log.warning("task %s did not stop in time", task.get_name())

    async def _release(self) -> None:
        self._modem_tasks.clear()
        self.modems.release_all()
        self.links.stop()
        self.host.close()
        await self.control.close()
        self.publisher.withdraw()
        log.info("stopped")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task of the daemon's task group: shutdown cancels it, whatever it is."""
        if self._group is None:
            coro.close()
            raise RuntimeError(f"{name}: the daemon is not running")
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_named(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        # The guardian's recovery steps: the status file shows each start and end at once.
        task = self._spawn(coro, name)
        self.publisher.poke()
        task.add_done_callback(lambda _task: self.publisher.poke())
        return task

    async def _keep(self, body: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a long-lived task; a bug in it is logged and the task restarted, not the daemon."""
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s task failed; restarting it in 5 s", what)
                await asyncio.sleep(RESTART_S)

    def _start_modem(self, modem: ModemConfig) -> None:
        lines = open_modem_lines(modem)
        runner = WatchedRunner(modem, self.discovery, self.settings)
        runner.link_state = dict(self.links.links)
        self.modems.put(runner, lines)
        if missing_lines(modem, lines):
            self._spawn(self._retry_lines(modem, lines), f"lines {modem.name}")
        if modem.interface and not modem.device:
            self._spawn(self._ask_netifd(runner), f"netifd {modem.name}")
        self._modem_tasks[modem.name] = self._spawn(
            self._keep(runner.run, f"{modem.name}: modem"), f"modem {modem.name}")

    async def _stop_modem(self, name: str) -> None:
        task = self._modem_tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_BUDGET_S)

    async def _retry_lines(self, modem: ModemConfig, lines: ModemLines, every_s: float = 2.0,
                           for_s: float = 30.0) -> None:
        """A line another program held a moment ago (the no-daemon event worker
        finishing a switch, say): try again for a while before doing without."""
        deadline = time.monotonic() + for_s
        while time.monotonic() < deadline:
            await asyncio.sleep(every_s)
            if self.modems.lines.get(modem.name) is not lines:
                return  # the modem was restarted by a reload: its own task retries
            if not fill_missing(modem, lines):
                return
        if missing_lines(modem, lines):
            log.error("%s (%s): running without %s: check the lines (see above) and reload",
                      modem.name, modem.role, ", ".join(f"{w}_gpio" for w in
                                                        missing_lines(modem, lines)))

    async def _ask_netifd(self, runner: ModemRunner) -> None:
        from remsim_supervisor.adapters.netifd import l3_device, ubus_command

        ubus = ubus_command(self.environment.ubus)
        if runner.cfg.interface is None or ubus is None:
            return
        try:
            device = await asyncio.wait_for(
                in_daemon_thread(l3_device, runner.cfg.interface, ubus), NETIFD_TIMEOUT_S)
        except TimeoutError:
            log.warning("%s: ubus did not name %s's device within %.0f s; waiting for its "
                        "hotplug event", runner.name, runner.cfg.interface, NETIFD_TIMEOUT_S)
            return
        if device:
            runner.set_l3_device(device)
            self.heartbeat.links_changed()

    # -- events -----------------------------------------------------------------------

    def _heartbeat_failed(self, modem: str) -> None:
        runner = self.modems.runner(modem)
        if runner is not None:
            runner.check_now()
        self.lan.heartbeat_failed(modem)
        self.publisher.poke()
        self.guardian.poke()

    def _path_moved(self) -> None:
        self.publisher.poke()
        self.guardian.poke()

    def _modem_changed(self) -> None:
        self.publisher.poke()
        self.guardian.poke()

    def _link_changed(self, name: str, up: bool) -> None:
        log.debug("link %s %s", name, "up" if up else "down")
        self.heartbeat.links_changed(name, up)  # first: the path moves at once if it must
        self.lan.links_changed(name, up)
        for runner in self.modems.runners.values():
            runner.link_changed(name, up)
        self.publisher.poke()
        self.guardian.poke()

    def hotplug(self, request: dict[str, Any]) -> None:
        """A hotplug event handed over the control socket (USB, netifd's iface)."""
        self.hotplug_events += 1
        env = request.get("env") or {}
        log.debug(
            "hotplug %s %s",
            request.get("subsystem"),
            " ".join(f"{k}={v}" for k, v in sorted(env.items()) if isinstance(v, str)),
        )
        runners = list(self.modems.runners.values())
        if request.get("subsystem") == "iface" and isinstance(env.get("INTERFACE"), str):
            # netifd's hotplug carries the logical interface and its device.
            action = env.get("ACTION")
            device = env.get("DEVICE") if action in ("ifup", "ifupdate") else None
            for runner in runners:
                if runner.cfg.interface == env["INTERFACE"] and (device or action == "ifdown"):
                    runner.set_l3_device(device if isinstance(device, str) else None)
            self.heartbeat.links_changed()
        for runner in runners:
            runner.hotplug()

    def _modem_views(self) -> list[ModemView]:
        return [
            ModemView(r.name, r.cfg.role, r.data_device, r.facts.profile, r.status())
            for r in self.modems.runners.values()
        ]

    async def _reroute(self, name: str, reason: str) -> bool:
        return await self.heartbeat.reroute(name, reason)

    # -- reload -----------------------------------------------------------------

    async def reload(self) -> tuple[bool, str]:
        """Apply the configuration file again; one reload at a time (SIGHUP, control socket)."""
        async with self._reloading:
            self.host.reloading()
            try:
                return await self._reload()
            finally:
                self.host.reloaded(self.config)

    async def _reload(self) -> tuple[bool, str]:
        try:
            new = load(self.config.path, self.environment.overrides)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            return False, f"configuration not applied, running state unchanged: {exc.problems[0]}"
        old = self.config
        self.config = new
        logsetup.set_level(new.supervisor.log_level)
        self._configure_owner_view(new)
        self.guardian.configure(self._guardian_settings(new))
        if new.supervisor.control_socket != old.supervisor.control_socket:
            log.warning("control_socket changes take effect at the next start")
        self.lan.configure(new.lan)
        old_modems = {mc.name: mc for mc in old.modems}
        new_modems = {mc.name: mc for mc in new.modems}
        changed = []
        for name in sorted(set(old_modems) | set(new_modems)):
            if old_modems.get(name) == new_modems.get(name):
                continue
            changed.append(name)
            # The old runner stays visible in status until its successor is in
            # place, so a reload never makes a configured modem disappear.
            await self._stop_modem(name)
            if name in new_modems:
                self._start_modem(new_modems[name])
            else:
                self.modems.drop(name)
        message = f"configuration reloaded; restarted: {', '.join(changed) or 'nothing'}"
        log.info(message)
        return True, message

    def _guardian_settings(self, config: Config) -> GuardianSettings:
        return GuardianSettings.from_config(config, ifup=self.environment.ifup)

    # -- the owner's view: status file, metrics, notifications ---------------------

    def _configure_owner_view(self, config: Config) -> None:
        """Apply the metrics and notify options (at start and on every reload)."""
        sup, notify = config.supervisor, config.notify
        self.publisher.set_metrics_file(sup.metrics_file if sup.metrics else None)
        self.publisher.watcher.grace_threshold = notify.grace_threshold
        self.notifier.directory = notify.directory
        self.notifier.timeout = notify.timeout
        self.notifier.webhook = notify.webhook
        self.notifier.webhook_allowed = (
            (lambda: True) if notify.webhook_via_iot else self._webhook_avoids_iot)

    def _webhook_avoids_iot(self) -> bool:
        """Whether the route to the webhook leaves through a device other than the
        IoT modem's (called in a worker thread: it resolves and asks the kernel)."""
        iot = self.config.by_role("iot")
        runner = self.modems.runner(iot.name) if iot is not None else None
        device = runner.data_device if runner is not None else None
        url = self.config.notify.webhook
        if device is None or url is None:
            return True
        return route_device(url) != device

    # -- the primary modem's SIM, for osmo-remsim's events ----------------------------

    def _primary_name(self) -> str:
        primary = self.config.by_role("primary")
        return primary.name if primary is not None else ""

    async def set_primary_sim(self, remote: bool) -> None:
        await self.modems.set_sim(self._primary_name(), remote)

    def primary_sim_remote(self) -> bool | None:
        return self.modems.sim_remote(self._primary_name())

    async def pin_dynamic(self, kind: str, hostport: str) -> None:
        host = hostport.rsplit(":", 1)[0].strip("[]")
        if self.dynamic_pins.get(kind) != host:
            self.dynamic_pins[kind] = host
            log.info("%s %s pinned to the heartbeat path", kind, host)
        self.heartbeat.pin_host(kind, host)

    # -- status -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        runners = self.modems.runners
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "config": self.config.path,
            "grace": self.heartbeat.grace(),
            **self.heartbeat.status(),
            "recoveries": self.guardian.status(),
            "lan": self.lan.status(),
            "modems": [
                self._modem_status(mc.name) for mc in self.config.modems if mc.name in runners
            ],
            "events": {
                "hotplug": self.hotplug_events,
                "osmo_remsim": self.sims.status(),
                "uevents": self.host.uevent_status(),
                "ubus": self.hooks.status() if self.hooks is not None else None,
            },
        }

    def _modem_status(self, name: str) -> dict[str, Any]:
        status = self.modems.runners[name].status()
        remote = self.modems.sim_remote(name)
        status["sim"]["slot"] = None if remote is None else ("remote" if remote else "local")
        return status


def run_daemon(config: Config, environment: Environment | None = None) -> int:
    daemon = Daemon(config, environment=environment)
    return asyncio.run(daemon.run())
