"""The control socket's server side: one connection, one request, one answer.

:class:`ControlServer` listens on the daemon's control socket (the wire
format, the limits and the client are :mod:`remsim_supervisor.supervisor.control`'s)
and answers from what it is handed: ``status`` from a snapshot, ``at`` and
``reset`` through the modems' actions and the guardian's on-demand step,
``event`` to the SIM switcher, ``hotplug`` and ``reload`` to the daemon. It
never waits on a modem to answer ``status``, so a wedged modem cannot slow
an answer down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from remsim_supervisor.adapters.serialport import AtTimeout, PortError
from remsim_supervisor.core.planner import RUNGS
from remsim_supervisor.supervisor import control
from remsim_supervisor.supervisor.actions import ModemActions

__all__ = ["ControlServer", "Handlers", "StartupError"]

log = logging.getLogger("remsim_supervisor.supervisor.daemon")

CLOSE_TIMEOUT_S = 1.0


class StartupError(Exception):
    """The daemon cannot start; one line saying why and what to do."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # 2: the configuration names something unusable


@dataclass(frozen=True)
class Handlers:
    """What the daemon does for each request the server does not answer itself."""

    status: Callable[[], dict[str, Any]]
    modems: ModemActions
    reset: Callable[[str, str, float | None], Awaitable[dict[str, Any]]]
    event: Callable[[str, dict[str, str], dict[str, Any] | None], Awaitable[dict[str, Any]]]
    reload: Callable[[], Awaitable[tuple[bool, str]]]
    hotplug: Callable[[dict[str, Any]], None]


class ControlServer:
    def __init__(self, path: str, handlers: Handlers) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None
        self._clients = 0

    async def start(self) -> None:
        path = self.path
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

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_S)
            self._server = None
        control.remove_socket(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients += 1
        try:
            answer = await self._answer(reader, writer)
            writer.write(control.encode(answer))
            await asyncio.wait_for(writer.drain(), control.IDLE_TIMEOUT_S)
        except (ConnectionError, OSError, TimeoutError):
            pass
        finally:
            self._clients -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> dict[str, Any]:
        """One connection's answer; every refusal is one line (limits: control's doc)."""
        if self._clients > control.MAX_CONNECTIONS:
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
        h = self.handlers
        if cmd == "status":
            return {"ok": True, "status": h.status()}
        if cmd == "at":
            return await self._at(request)
        if cmd == "hotplug":
            h.hotplug(request)
            return {"ok": True}
        if cmd == "event":
            env = request.get("env") or {}
            if not isinstance(env, dict):
                return {"ok": False, "error": "env must be an object"}
            origin = request.get("origin")
            return await h.event(str(request.get("cause", "")),
                                 {str(k): str(v) for k, v in env.items()},
                                 origin if isinstance(origin, dict) else None)
        if cmd == "reset":
            return await self._reset(request)
        if cmd == "reload":
            ok, message = await h.reload()
            return {"ok": ok, "message": message} if ok else {"ok": False, "error": message}
        return {"ok": False, "error": f"unknown request {cmd!r}"}

    def _unknown(self, name: str) -> dict[str, Any] | None:
        names = [s.name for s in self.handlers.modems.snapshots()]
        if name in names:
            return None
        known = ", ".join(names) or "none"
        return {"ok": False, "error": f"no modem named {name!r} (configured: {known})"}

    async def _at(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("modem", ""))
        if (refusal := self._unknown(name)) is not None:
            return refusal
        command = str(request.get("command", "")).strip()
        if not command.upper().startswith("AT"):
            return {"ok": False, "error": "an AT command starts with AT"}
        timeout = request.get("timeout")
        try:
            response = await self.handlers.modems.at(name, command,
                                                     float(timeout) if timeout else None)
        except (AtTimeout, PortError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        return {
            "ok": True,
            "lines": list(response.lines),
            "final": response.final.text,
            "error": response.final.is_error,
        }

    async def _reset(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request.get("modem", ""))
        if (refusal := self._unknown(name)) is not None:
            return refusal
        level = str(request.get("level") or "soft_reset")
        levels = [r for r in RUNGS if r != "reroute"]
        if level not in levels:
            return {"ok": False, "error": f"unknown level {level!r}: use one of "
                    + ", ".join(levels)}
        timeout = request.get("timeout")
        return await self.handlers.reset(name, level, float(timeout) if timeout else None)
