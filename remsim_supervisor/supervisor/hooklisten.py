"""The hooks' fast lane: a supervised ``ubus listen`` child feeding the daemon's handlers.

On a router the hotplug hooks and the osmo-remsim event script do not start
Python for every event while the daemon runs: they ``ubus send
remsim-supervisor.hook JSON`` from the shell (docs/remsim-events.md), and
:class:`HookListener` hears them through one long-lived child, ``ubus listen
remsim-supervisor.hook``, whose lines the event loop reads. Each line goes,
through :func:`~remsim_supervisor.core.hookwire.parse_line`, to the very
handlers the control socket's ``event`` and ``hotplug`` requests reach: the
SIM switcher's ``submit`` (coalescing, ordering by origin) and the daemon's
``hotplug``.

The hooks must only send when someone listens, and must find that out without
forking. So once the child is proven to hear the bus (the listener sends a
probe with a fresh token and waits for it to come back), the listener writes
the **ready file** beside the control socket (:func:`ready_file_for`)::

    DAEMON_PID LISTENER_PID
    /usr/bin/ubus
    /var/run/ubus/ubus.sock        (empty: ubus's default socket)

and the hooks check both pids with the shell's ``kill -0`` before sending;
otherwise they take the Python path over the control socket, as without ubus.
The file goes before the child is stopped and whenever it dies, so a hook
never sends into silence for longer than the kernel takes to end a process.

The child is restarted when it dies (after 1 s, doubling to 30 s while it
keeps failing), killed and reaped on stop; a listener left by a daemon that
was killed is ended at the next start. Malformed lines (anyone on the bus may
send the event) are counted, the first logged, later ones at most once a
minute; none ends the listener. No ``ubus``: no listener, the hooks use the
control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from remsim_supervisor.adapters.portlock import pid_alive
from remsim_supervisor.core.hookwire import (
    HOOK_EVENT,
    MAX_LINE,
    EventHook,
    HotplugHook,
    Probe,
    WireError,
    parse_line,
)

__all__ = ["HookListener", "listener_for", "origin_of", "ready_file_for"]

log = logging.getLogger("remsim_supervisor.supervisor.daemon")

PROBE_EVERY_S = 0.2  # a probe sent again until the child hears one
READY_WITHIN_S = 5.0  # a child that hears no probe in this long is restarted
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that lived this long starts the backoff anew
STOP_WAIT_S = 1.0
MALFORMED_LOG_EVERY_S = 60.0
CHUNK = 65536

EventHandler = Callable[[str, dict[str, str], dict[str, Any] | None], Awaitable[Any]]
HotplugHandler = Callable[[dict[str, Any]], None]


def ready_file_for(control_socket: str) -> str:
    """The ready file beside ``control_socket``: ``X.sock`` -> ``X.ubus``, else ``X.ubus``."""
    base = control_socket[: -len(".sock")] if control_socket.endswith(".sock") else control_socket
    return base + ".ubus"


def origin_of(pid: int | None, ticks: int | None, now_boottime: float,
              hz: int) -> dict[str, Any] | None:
    """The ``origin`` the SIM switcher takes, with the process's age computed here."""
    if pid is None or ticks is None or hz <= 0:
        return None
    return {"pid": pid, "ticks": ticks, "age_s": round(max(0.0, now_boottime - ticks / hz), 3)}


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class HookListener:
    """Runs and watches ``UBUS [-s SOCKET] listen remsim-supervisor.hook``.

    ``on_event(cause, env, origin)`` and ``on_hotplug(request)`` are the
    control socket's handlers; :meth:`run` is the one task (cancel it to stop).
    """

    def __init__(self, ubus: str, socket: str | None, ready_file: str, *,
                 on_event: EventHandler, on_hotplug: HotplugHandler) -> None:
        self.ubus = ubus
        self.socket = socket
        self.ready_file = ready_file
        self._on_event = on_event
        self._on_hotplug = on_hotplug
        self._proc: asyncio.subprocess.Process | None = None
        self._probe: str | None = None
        self._heard = asyncio.Event()
        self.ready = False
        self.starts = 0
        self.received = {"event": 0, "hotplug": 0}
        self.malformed = 0
        self._malformed_logged_at: float | None = None
        self._ready_at: float | None = None
        self._hz = os.sysconf("SC_CLK_TCK")

    def _argv(self, *args: str) -> list[str]:
        return [self.ubus, *(["-s", self.socket] if self.socket else []), *args]

    # -- the task ---------------------------------------------------------------

    async def run(self) -> None:
        self._end_leftover()
        backoff = FIRST_BACKOFF_S
        failing = False  # the last child never became ready: say so once, not every time
        try:
            while True:
                started = time.monotonic()
                reason = await self._run_child()
                was_ready = self._ready_at is not None and self._ready_at >= started
                if time.monotonic() - started >= HEALTHY_AFTER_S:
                    backoff = FIRST_BACKOFF_S
                (log.debug if failing and not was_ready else log.warning)(
                    "hook listener (%s) %s; hooks use the control socket, restarting it in "
                    "%.0f s", " ".join(self._argv("listen", HOOK_EVENT)), reason, backoff)
                failing = not was_ready
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
        finally:
            self._withdraw()
            await self._end_child()

    async def _run_child(self) -> str:
        """One child's life: start, probe, serve; why it ended."""
        self.starts += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv("listen", HOOK_EVENT), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)  # a terminal's ^C is the daemon's to handle
        except OSError as exc:
            return f"cannot start: {exc}"
        self._proc = proc
        reader = asyncio.ensure_future(self._read(proc))
        try:
            if not await self._prove(reader):
                return "heard none of its probes" if not reader.done() else await self._why(proc)
            self._publish(proc.pid)
            await reader
            return await self._why(proc)
        finally:
            self._withdraw()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            await self._end_child()

    async def _prove(self, reader: asyncio.Future[None]) -> bool:
        """Send probes until the child hears one (it has joined the bus) or time is up."""
        self._probe = os.urandom(8).hex()
        self._heard.clear()
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline and not reader.done():
            await self._send_probe(self._probe)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), PROBE_EVERY_S)
                return True
        return False

    async def _send_probe(self, token: str) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv("send", HOOK_EVENT, f'{{"probe": "{token}"}}'),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return
        try:
            await asyncio.wait_for(proc.wait(), READY_WITHIN_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _why(self, proc: asyncio.subprocess.Process) -> str:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        said = b""
        if proc.stderr is not None:
            with contextlib.suppress(TimeoutError, OSError):
                said = await asyncio.wait_for(proc.stderr.read(512), 0.2)
        text = said.decode("utf-8", "replace").strip().splitlines()
        return f"ended (exit status {proc.returncode}{': ' + text[0][:200] if text else ''})"

    # -- lines ------------------------------------------------------------------

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Lines of the child's output until it closes; one too long is skipped whole."""
        assert proc.stdout is not None
        buf = b""
        skipping = False
        while chunk := await proc.stdout.read(CHUNK):
            buf += chunk
            while (end := buf.find(b"\n")) >= 0:
                line, buf = buf[:end], buf[end + 1:]
                if skipping:
                    skipping = False
                    self._malformed(f"line longer than {MAX_LINE} bytes")
                elif line.strip():
                    await self._take(line)
            if len(buf) > MAX_LINE:
                buf, skipping = b"", True

    async def _take(self, line: bytes) -> None:
        try:
            message = parse_line(line)
        except WireError as exc:
            self._malformed(str(exc))
            return
        if isinstance(message, Probe):
            if message.token == self._probe:
                self._heard.set()
            return
        try:
            if isinstance(message, EventHook):
                self.received["event"] += 1
                origin = origin_of(message.pid, message.ticks, _boottime(), self._hz)
                await self._on_event(message.cause, dict(message.env), origin)
            elif isinstance(message, HotplugHook):
                self.received["hotplug"] += 1
                self._on_hotplug({"cmd": "hotplug", "subsystem": message.subsystem,
                                  "env": dict(message.env)})
        except Exception:  # a handler's bug is logged; the listener goes on
            log.exception("hook listener: handling %s failed", type(message).__name__)

    def _malformed(self, why: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        last = self._malformed_logged_at
        if last is None or now - last >= MALFORMED_LOG_EVERY_S:
            self._malformed_logged_at = now
            log.warning("hook listener: a %s message was ignored: %s (%d so far)",
                        HOOK_EVENT, why, self.malformed)

    # -- the ready file -----------------------------------------------------------

    def _publish(self, child: int) -> None:
        text = f"{os.getpid()} {child}\n{self.ubus}\n{self.socket or ''}\n"
        tmp = f"{self.ready_file}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.ready_file)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            log.warning("hook listener: cannot write %s (%s): hooks use the control socket",
                        self.ready_file, exc)
            return
        self.ready = True
        self._ready_at = time.monotonic()
        log.info("hooks and osmo-remsim events arrive over ubus (%s)", self.ready_file)

    def _withdraw(self) -> None:
        self.ready = False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ready_file)

    async def _end_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), STOP_WAIT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def _end_leftover(self) -> None:
        """End the listener a killed daemon left behind (its ready file names it)."""
        try:
            with open(self.ready_file, encoding="utf-8") as f:
                pids = f.readline().split()
        except (OSError, UnicodeDecodeError):
            return
        self._withdraw()
        if len(pids) != 2 or not all(p.isdigit() for p in pids):
            return
        daemon, child = (int(p) for p in pids)
        if daemon == os.getpid() or pid_alive(daemon):
            return
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            return
        if b"listen" in words and HOOK_EVENT.encode() in words:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(child, signal.SIGTERM)
                log.info("hook listener: ended the listener %d of an earlier run", child)

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "starts": self.starts, "malformed": self.malformed,
                **{f"received_{k}": v for k, v in self.received.items()}}


def listener_for(ubus: str | None, socket: str | None, control_socket: str, *,
                 on_event: EventHandler, on_hotplug: HotplugHandler) -> HookListener | None:
    """A listener through ``ubus`` (else the one on PATH); None without one (the hooks
    then use the control socket, as on a host without ubus)."""
    command = ubus or shutil.which("ubus")
    if not command:
        return None
    return HookListener(command, socket, ready_file_for(control_socket),
                        on_event=on_event, on_hotplug=on_hotplug)
