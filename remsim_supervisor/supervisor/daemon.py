"""The daemon: owns the modem tasks, the link monitor and the control socket.

``remsim-supervisor run`` builds a :class:`Daemon` from a validated
configuration and runs it in the foreground until SIGTERM/SIGINT (procd's
stop). Its structure is flat on purpose: one owner task per modem
(:class:`~remsim_supervisor.supervisor.modem.ModemRunner`), the rtnetlink link
monitor feeding them link changes, and the control-socket server answering
``status``, ``at`` and ``hotplug`` requests from the in-memory state only, so
a wedged modem can never slow an answer down.

Signals:

* SIGTERM / SIGINT: orderly stop. Modem tasks are cancelled, their ports
  closed in the background (a tty whose close blocks is abandoned), the
  control socket removed. The whole stop is bounded well under 5 s.
* SIGHUP: reload. The file is validated first; a broken file is logged line
  by line and *nothing* changes. A valid one restarts only the modems whose
  section changed, and applies the new log level.

Test and lab hooks come from the environment, never from the configuration
file: ``REMSIM_SUPERVISOR_SYSFS`` / ``REMSIM_SUPERVISOR_DEV`` (roots for
discovery), ``REMSIM_SUPERVISOR_LOCK_DIR`` (UUCP lock files) and
``REMSIM_SUPERVISOR_POLL_INTERVAL`` (seconds between registration polls).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from typing import Any

from remsim_supervisor import __version__
from remsim_supervisor.supervisor import control
from remsim_supervisor import log as logsetup
from remsim_supervisor.config import Config, ConfigError, ModemConfig, load
from remsim_supervisor.adapters.discovery import Discovery
from remsim_supervisor.adapters.gpio import pulse
from remsim_supervisor.supervisor.heartbeat import STATE_DIR, HeartbeatService, ModemView
from remsim_supervisor.supervisor.lines import (
    ModemLines,
    fill_missing,
    is_remote,
    missing_lines,
    open_modem_lines,
    sim_level,
)
from remsim_supervisor.supervisor.modem import ModemRunner, RunnerSettings
from remsim_supervisor.adapters.netlink import LinkMonitor
from remsim_supervisor.adapters.notify import Notifier, Watcher, route_device
from remsim_supervisor.supervisor.publish import STATUS_FILE, Publisher
from remsim_supervisor.supervisor.statusview import mask_identifiers
from remsim_supervisor.adapters.serialport import DEFAULT_LOCK_DIR, AtTimeout, PortError, in_daemon_thread

log = logging.getLogger("remsim_supervisor.supervisor.daemon")

STOP_BUDGET_S = 3.0


def settings_from_env(environ: Mapping[str, str]) -> RunnerSettings:
    poll = environ.get("REMSIM_SUPERVISOR_POLL_INTERVAL")
    return RunnerSettings(
        poll_interval=float(poll) if poll else 30.0,
        lock_dir=environ.get("REMSIM_SUPERVISOR_LOCK_DIR", DEFAULT_LOCK_DIR),
    )


class StartupError(Exception):
    """The daemon cannot start; one line saying why and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: the configuration names something unusable


class Daemon:
    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        self.environ = env
        self.discovery = Discovery(
            sysfs_root=env.get("REMSIM_SUPERVISOR_SYSFS", "/sys"),
            dev_root=env.get("REMSIM_SUPERVISOR_DEV", "/dev"),
        )
        self.settings = settings_from_env(env)
        self.runners: dict[str, ModemRunner] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.lines: dict[str, ModemLines] = {}
        self._side_tasks: set[asyncio.Future[Any]] = set()
        self.dynamic_pins: dict[str, str] = {}  # "bankd"/"server" -> host, from osmo-remsim
        self.sims: Any = None
        self._sims_task: asyncio.Task[None] | None = None
        self.state_dir = env.get("REMSIM_SUPERVISOR_STATE_DIR", STATE_DIR)
        self.heartbeat = HeartbeatService(config, self._modem_views, state_dir=self.state_dir)
        self.heartbeat.on_failure = self._heartbeat_failed
        self._heartbeat_task: asyncio.Task[None] | None = None
        from remsim_supervisor.supervisor.guardian import Guardian

        self.guardian = Guardian(self)
        self._guardian_task: asyncio.Task[None] | None = None
        self.links = LinkMonitor(self._link_changed)
        self.started = time.monotonic()
        self.hotplug_events = 0
        self._stop = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._socket_path = config.supervisor.control_socket
        self.notifier = Notifier(None)
        self.publisher = Publisher(
            self.status, status_file=os.path.join(self.state_dir, STATUS_FILE),
            metrics_file=None, watcher=Watcher(0), notifier=self.notifier,
            mask=mask_identifiers)
        self._configure_owner_view(config)
        self.heartbeat.on_move = self.publisher.poke
        self._view_tasks: list[asyncio.Task[None]] = []
        self._control_clients = 0

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        await self._start_control()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        try:
            self.links.start()
        except OSError as exc:
            log.warning("no netlink link monitor (%s): modems stop at 'registered'", exc)
        for modem in self.config.modems:
            self._start_modem(modem)
        self._start_sim_switcher()
        self._view_tasks = [
            asyncio.create_task(self._keep(self.publisher.run, "status publisher"),
                                name="status publisher"),
            asyncio.create_task(self._keep(self.notifier.run, "notifications"),
                                name="notifications"),
        ]
        self._heartbeat_task = asyncio.create_task(self._guard_heartbeat(), name="heartbeat")
        if self.config.escalation.enabled:
            self._guardian_task = asyncio.create_task(
                self._keep(self.guardian.run, "guardian"), name="guardian"
            )
        else:
            log.warning("automatic recovery is off (escalation.enabled is 0): modems are "
                        "watched, never reset")

        log.info(
            "remsim-supervisor %s running: %s",
            __version__,
            ", ".join(f"{mc.name} ({mc.role})" for mc in self.config.modems),
        )
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        log.info("stopping")
        if self._guardian_task is not None:
            self._guardian_task.cancel()
            await self.guardian.stop()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.wait({self._heartbeat_task}, timeout=0.5)
            await self.heartbeat.stop(budget_s=1.5)
        tasks = list(self.tasks.values()) + self._view_tasks
        self._view_tasks = []
        if self._sims_task is not None:
            tasks.append(self._sims_task)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_BUDGET_S - 1.5)
            for task in pending:
                log.warning("task %s did not stop in time; leaving it", task.get_name())
        self.tasks.clear()
        for lines in self.lines.values():
            lines.release()
        self.lines.clear()
        self.links.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        control.remove_socket(self._socket_path)
        self.publisher.withdraw()
        log.info("stopped")

    def _start_modem(self, modem: ModemConfig) -> None:
        old_lines = self.lines.pop(modem.name, None)
        if old_lines is not None:
            old_lines.release()
        self.lines[modem.name] = open_modem_lines(modem)
        if missing_lines(modem, self.lines[modem.name]):
            self._spawn(self._retry_lines(modem))
        runner = ModemRunner(modem, self.discovery, self.settings)
        runner.link_state = dict(self.links.links)
        if modem.interface and not modem.device:
            self._spawn(self._ask_netifd(runner))
        self.runners[modem.name] = runner
        self.tasks[modem.name] = asyncio.create_task(
            self._guard(runner), name=f"modem {modem.name}"
        )

    async def _retry_lines(self, modem: ModemConfig, every_s: float = 2.0,
                           for_s: float = 30.0) -> None:
        """A line another program held a moment ago (the no-daemon event worker
        finishing a switch, say): try again for a while before doing without."""
        lines = self.lines.get(modem.name)
        deadline = time.monotonic() + for_s
        while lines is not None and time.monotonic() < deadline:
            await asyncio.sleep(every_s)
            if self.lines.get(modem.name) is not lines:
                return  # the modem was restarted by a reload: its own task retries
            if not fill_missing(modem, lines):
                return
        if lines is not None and missing_lines(modem, lines):
            log.error("%s (%s): running without %s: check the lines (see above) and reload",
                      modem.name, modem.role, ", ".join(f"{w}_gpio" for w in
                                                        missing_lines(modem, lines)))

    def _spawn(self, coro: Any) -> None:
        """A short task of the daemon's own, kept referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _ask_netifd(self, runner: ModemRunner) -> None:
        from remsim_supervisor.adapters.netifd import l3_device, ubus_command

        if runner.cfg.interface is None or ubus_command() is None:
            return
        device = await in_daemon_thread(l3_device, runner.cfg.interface)
        if device:
            runner.set_l3_device(device)
            self.heartbeat.links_changed()

    async def _guard(self, runner: ModemRunner) -> None:
        """Run a modem task; a bug in it is logged and the task restarted, not the daemon."""
        while True:
            try:
                await runner.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: modem task failed; restarting it in 5 s", runner.name)
                await asyncio.sleep(5.0)

    async def _guard_heartbeat(self) -> None:
        await self._keep(self.heartbeat.run, "heartbeat")

    async def _keep(self, body: Any, what: str) -> None:
        """Run a long-lived task; a bug in it is logged and the task restarted, not the daemon."""
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s task failed; restarting it in 5 s", what)
                await asyncio.sleep(5.0)

    def _heartbeat_failed(self, modem: str) -> None:
        runner = self.runners.get(modem)
        if runner is not None:
            runner.check_now()
        self.guardian.poke()

    def _modem_views(self) -> list[ModemView]:
        return [
            ModemView(r.name, r.cfg.role, r.data_device, r.facts.profile, r.status())
            for r in self.runners.values()
        ]

    async def _stop_modem(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_BUDGET_S)

    def _link_changed(self, name: str, up: bool) -> None:
        log.debug("link %s %s", name, "up" if up else "down")
        for runner in self.runners.values():
            runner.link_changed(name, up)
        self.heartbeat.links_changed()

    # -- reload -----------------------------------------------------------------

    async def reload(self) -> tuple[bool, str]:
        try:
            new = load(self.config.path, self.environ)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            return False, f"configuration not applied, running state unchanged: {exc.problems[0]}"
        old = self.config
        self.config = new
        logsetup.set_level(new.supervisor.log_level)
        self._configure_owner_view(new)
        if new.supervisor.control_socket != old.supervisor.control_socket:
            log.warning("control_socket changes take effect at the next start")
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
                self.runners.pop(name, None)
                removed = self.lines.pop(name, None)
                if removed is not None:
                    removed.release()
        message = f"configuration reloaded; restarted: {', '.join(changed) or 'nothing'}"
        log.info(message)
        return True, message

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
        runner = self.runners.get(iot.name) if iot is not None else None
        device = runner.data_device if runner is not None else None
        url = self.config.notify.webhook
        if device is None or url is None:
            return True
        return route_device(url) != device

    # -- modem actions: resets and SIM lines ---------------------------------------

    def _start_sim_switcher(self) -> None:
        from remsim_supervisor.cli.event import settle_from_env
        from remsim_supervisor.supervisor.simswitch import SimSwitcher

        self.sims = SimSwitcher(
            set_sim=self.set_primary_sim,
            get_sim=self.primary_sim_remote,
            reset_modem=lambda reason: self.reset_modem(self._primary_name(), reason),
            pin=self.pin_dynamic,
            settle_s=settle_from_env(self.environ),
        )
        self._sims_task = asyncio.create_task(self.sims.run(), name="osmo-remsim events")

    def _primary_name(self) -> str:
        primary = self.config.by_role("primary")
        return primary.name if primary is not None else ""

    async def reset_modem(self, name: str, reason: str) -> bool:
        """One modem reset: the reset line's pulse when there is one, else the vendor's AT reset."""
        runner = self.runners.get(name)
        if runner is None:
            log.error("cannot reset %r: no such modem (%s)", name, reason)
            return False
        cfg = runner.cfg
        lines = self.lines.get(name)
        ok = False
        if lines is not None and lines.reset is not None:
            width = (
                cfg.reset_pulse_ms
                or (runner.profile.timings.reset_pulse_ms if runner.profile else None)
                or 300
            )
            log.info(
                "%s (%s): reset pulse %d ms on %s: %s",
                name,
                cfg.role,
                width,
                cfg.reset_gpio,
                reason,
            )
            await pulse(lines.reset, width)
            ok = True
        elif runner.channel is not None and runner.profile is not None:
            command = runner.profile.soft_reset
            log.info("%s (%s): soft reset %s: %s", name, cfg.role, command, reason)
            try:
                response = await runner.at(command, runner.profile.timings.soft_reset_answer_s)
                ok = response.ok
            except (AtTimeout, PortError) as exc:
                log.warning("%s (%s): soft reset failed: %s", name, cfg.role, exc)
        else:
            log.error(
                "%s (%s): cannot reset (%s): no reset_gpio and no AT port", name, cfg.role, reason
            )
        if cfg.role == "iot" and lines is not None and lines.sim is not None:
            lines.sim.set(sim_level(cfg, remote=False))  # the IoT modem stays on its own SIM
        return ok

    async def set_primary_sim(self, remote: bool) -> None:
        name = self._primary_name()
        cfg = self.config.modem(name)
        lines = self.lines.get(name)
        if cfg is None or lines is None or lines.sim is None:
            log.warning(
                "no SIM line to switch to the %s SIM (primary modem has no sim_gpio)",
                "remote" if remote else "local",
            )
            return
        lines.sim.set(sim_level(cfg, remote))
        log.info(
            "%s (primary): SIM line %s -> %s SIM",
            name,
            cfg.sim_gpio,
            "remote" if remote else "local",
        )

    def primary_sim_remote(self) -> bool | None:
        return self._sim_slot(self._primary_name())

    def _sim_slot(self, name: str) -> bool | None:
        cfg = self.config.modem(name)
        lines = self.lines.get(name)
        if cfg is None or lines is None or lines.sim is None:
            return None
        try:
            return is_remote(cfg, lines.sim.get())
        except Exception:
            return None

    async def pin_dynamic(self, kind: str, hostport: str) -> None:
        host = hostport.rsplit(":", 1)[0].strip("[]")
        if self.dynamic_pins.get(kind) != host:
            self.dynamic_pins[kind] = host
            log.info("%s %s pinned to the heartbeat path", kind, host)
        self.heartbeat.pin_host(kind, host)

    # -- control socket ---------------------------------------------------------

    async def _start_control(self) -> None:
        path = self._socket_path
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StartupError(f"control socket directory {directory} does not exist")
        try:
            control.clear_stale_socket(path)  # a socket left by a crash; nothing else
        except control.NotASocket as exc:
            raise StartupError(str(exc), exit_code=2) from None
        except control.ControlError as exc:
            raise StartupError(str(exc)) from None
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=path, limit=control.MAX_REQUEST + 2)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._control_clients += 1
        try:
            answer = await self._answer(reader, writer)
            writer.write(control.encode(answer))
            await asyncio.wait_for(writer.drain(), control.IDLE_TIMEOUT_S)
        except (ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._control_clients -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> dict[str, Any]:
        """One connection's answer; every refusal is one line (limits: control's doc)."""
        if self._control_clients > control.MAX_CONNECTIONS:
            return {"ok": False, "error": f"busy: more than {control.MAX_CONNECTIONS} control "
                    "connections at once; try again"}
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is None or not control.peer_allowed(control.peer_uid(sock)):
            return {"ok": False, "error": "only root may use the control socket"}
        try:
            line = await asyncio.wait_for(reader.readline(), control.IDLE_TIMEOUT_S)
            request = control.parse_request(line)
        except TimeoutError:
            return {"ok": False, "error": "bad request: no complete request within "
                    f"{control.IDLE_TIMEOUT_S:g} s"}
        except ValueError:  # the reader's limit: a line longer than MAX_REQUEST
            return {"ok": False, "error": f"bad request: request larger than "
                    f"{control.MAX_REQUEST} bytes"}
        except control.BadRequest as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return await self.handle(request)
        except Exception as exc:
            log.exception("control request %r failed", request.get("cmd"))
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            return {"ok": False, "error": f"internal error: {first}"}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "at":
            return await self._handle_at(request)
        if cmd == "hotplug":
            return self._handle_hotplug(request)
        if cmd == "event":
            env = request.get("env") or {}
            if not isinstance(env, dict):
                return {"ok": False, "error": "env must be an object"}
            origin = request.get("origin")
            result: dict[str, Any] = await self.sims.submit(
                str(request.get("cause", "")),
                {str(k): str(v) for k, v in env.items()},
                origin=origin if isinstance(origin, dict) else None,
            )
            return result
        if cmd == "reset":
            return await self._handle_reset(request)
        if cmd == "reload":
            ok, message = await self.reload()
            return {"ok": ok, "message": message} if ok else {"ok": False, "error": message}
        return {"ok": False, "error": f"unknown request {cmd!r}"}

    async def _handle_at(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("modem", ""))
        runner = self.runners.get(name)
        if runner is None:
            known = ", ".join(self.runners) or "none"
            return {"ok": False, "error": f"no modem named {name!r} (configured: {known})"}
        command = str(request.get("command", "")).strip()
        if not command.upper().startswith("AT"):
            return {"ok": False, "error": "an AT command starts with AT"}
        timeout = request.get("timeout")
        try:
            response = await runner.at(command, float(timeout) if timeout else None)
        except AtTimeout as exc:
            return {"ok": False, "error": str(exc)}
        except (PortError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        return {
            "ok": True,
            "lines": list(response.lines),
            "final": response.final.text,
            "error": response.final.is_error,
        }

    async def _handle_reset(self, request: dict[str, Any]) -> dict[str, Any]:
        from remsim_supervisor.core.planner import RUNGS

        name = str(request.get("modem", ""))
        if name not in self.runners:
            known = ", ".join(self.runners) or "none"
            return {"ok": False, "error": f"no modem named {name!r} (configured: {known})"}
        level = str(request.get("level") or "soft_reset")
        levels = [r for r in RUNGS if r != "reroute"]
        if level not in levels:
            return {"ok": False, "error": f"unknown level {level!r}: use one of "
                    + ", ".join(levels)}
        timeout = request.get("timeout")
        return await self.guardian.on_demand(name, level, float(timeout) if timeout else None)

    def _handle_hotplug(self, request: dict[str, Any]) -> dict[str, Any]:
        self.hotplug_events += 1
        env = request.get("env") or {}
        log.debug(
            "hotplug %s %s",
            request.get("subsystem"),
            " ".join(f"{k}={v}" for k, v in sorted(env.items()) if isinstance(v, str)),
        )
        if request.get("subsystem") == "iface" and isinstance(env.get("INTERFACE"), str):
            # netifd's hotplug carries the logical interface and its device.
            action = env.get("ACTION")
            device = env.get("DEVICE") if action in ("ifup", "ifupdate") else None
            for runner in self.runners.values():
                if runner.cfg.interface == env["INTERFACE"] and (device or action == "ifdown"):
                    runner.set_l3_device(device if isinstance(device, str) else None)
            self.heartbeat.links_changed()
        for runner in self.runners.values():
            runner.hotplug()
        return {"ok": True}

    # -- status -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "config": self.config.path,
            "grace": self.heartbeat.grace(),
            **self.heartbeat.status(),
            "recoveries": self.guardian.status(),
            "modems": [
                self._modem_status(mc.name) for mc in self.config.modems if mc.name in self.runners
            ],
            "events": {
                "hotplug": self.hotplug_events,
                "osmo_remsim": self.sims.status() if self.sims is not None else None,
            },
        }

    def _modem_status(self, name: str) -> dict[str, Any]:
        status = self.runners[name].status()
        remote = self._sim_slot(name)
        status["sim"]["slot"] = None if remote is None else ("remote" if remote else "local")
        return status


def run_daemon(config: Config) -> int:
    daemon = Daemon(config)
    return asyncio.run(daemon.run())
