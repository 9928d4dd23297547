"""The daemon: owns the modem tasks, the link monitor and the control socket.

``remsim-supervisor run`` builds a :class:`Daemon` from a validated
configuration and runs it in the foreground until SIGTERM/SIGINT (procd's
stop). Its structure is flat on purpose: one owner task per modem
(:class:`~remsim_supervisor.modem.runner.ModemRunner`), the rtnetlink link
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

from remsim_supervisor import __version__, control
from remsim_supervisor import log as logsetup
from remsim_supervisor.config import Config, ConfigError, ModemConfig, load
from remsim_supervisor.discovery import Discovery
from remsim_supervisor.modem.runner import ModemRunner, RunnerSettings
from remsim_supervisor.netlink import LinkMonitor
from remsim_supervisor.transport import DEFAULT_LOCK_DIR, AtTimeout, PortError

log = logging.getLogger("remsim_supervisor.daemon")

STOP_BUDGET_S = 3.0


def settings_from_env(environ: Mapping[str, str]) -> RunnerSettings:
    poll = environ.get("REMSIM_SUPERVISOR_POLL_INTERVAL")
    return RunnerSettings(
        poll_interval=float(poll) if poll else 30.0,
        lock_dir=environ.get("REMSIM_SUPERVISOR_LOCK_DIR", DEFAULT_LOCK_DIR),
    )


class StartupError(Exception):
    """The daemon cannot start; one line saying why and what to do."""


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
        self.links = LinkMonitor(self._link_changed)
        self.started = time.monotonic()
        self.hotplug_events = 0
        self._stop = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._socket_path = config.supervisor.control_socket

    # -- lifecycle ------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        await self._start_control()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            self.links.start()
        except OSError as exc:
            log.warning("no netlink link monitor (%s): modems stop at 'registered'", exc)
        for modem in self.config.modems:
            self._start_modem(modem)
        log.info("remsim-supervisor %s running: %s", __version__,
                 ", ".join(f"{mc.name} ({mc.role})" for mc in self.config.modems))
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        return 0

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        log.info("stopping")
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=STOP_BUDGET_S)
            for task in pending:
                log.warning("task %s did not stop in time; leaving it", task.get_name())
        self.tasks.clear()
        self.links.stop()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._socket_path)
        log.info("stopped")

    def _start_modem(self, modem: ModemConfig) -> None:
        runner = ModemRunner(modem, self.discovery, self.settings)
        runner.link_state = dict(self.links.links)
        self.runners[modem.name] = runner
        self.tasks[modem.name] = asyncio.create_task(self._guard(runner), name=f"modem {modem.name}")

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

    async def _stop_modem(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_BUDGET_S)

    def _link_changed(self, name: str, up: bool) -> None:
        log.debug("link %s %s", name, "up" if up else "down")
        for runner in self.runners.values():
            runner.link_changed(name, up)

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
        message = f"configuration reloaded; restarted: {', '.join(changed) or 'nothing'}"
        log.info(message)
        return True, message

    # -- control socket ---------------------------------------------------------

    async def _start_control(self) -> None:
        path = self._socket_path
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            raise StartupError(f"control socket directory {directory} does not exist")
        if os.path.exists(path) or os.path.islink(path):
            if control.socket_in_use(path):
                raise StartupError(f"another remsim-supervisor answers on {path}: stop it first")
            os.unlink(path)  # left by a crash
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock: socket.socket | None = writer.get_extra_info("socket")
            if sock is None or not control.peer_allowed(control.peer_uid(sock)):
                writer.write(control.encode({"ok": False, "error": "only root may use the control socket"}))
                return
            try:
                line = await asyncio.wait_for(reader.readline(), 5.0)
                request = control.decode(line)
            except (asyncio.TimeoutError, ValueError, UnicodeDecodeError) as exc:
                writer.write(control.encode({"ok": False, "error": f"bad request: {exc}"}))
                return
            try:
                answer = await self.handle(request)
            except Exception as exc:
                log.exception("control request %r failed", request.get("cmd"))
                answer = {"ok": False, "error": f"internal error: {exc}"}
            writer.write(control.encode(answer))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "at":
            return await self._handle_at(request)
        if cmd == "hotplug":
            return self._handle_hotplug(request)
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
        return {"ok": True, "lines": list(response.lines), "final": response.final.text,
                "error": response.final.is_error}

    def _handle_hotplug(self, request: dict[str, Any]) -> dict[str, Any]:
        self.hotplug_events += 1
        env = request.get("env") or {}
        log.debug("hotplug %s %s", request.get("subsystem"),
                  " ".join(f"{k}={v}" for k, v in sorted(env.items()) if isinstance(v, str)))
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
            "modems": [self.runners[mc.name].status() for mc in self.config.modems
                       if mc.name in self.runners],
            "events": {"hotplug": self.hotplug_events},
        }


def run_daemon(config: Config) -> int:
    daemon = Daemon(config)
    return asyncio.run(daemon.run())
