"""The daemon's control socket: wire format, server and client.

The running daemon listens on a Unix stream socket (``control_socket`` in the
configuration, ``/var/run/remsim-supervisor.sock`` by default). The socket
file is mode 0600 and the server also checks the peer's credentials
(``SO_PEERCRED``): only root, or the daemon's own user, is served. That
matters because the socket can reset modems and run AT commands.

Wire format: the client sends one JSON object on one line and reads one JSON
object on one line back, then the connection closes. Requests carry
``"cmd"``; answers carry ``"ok"`` and, when false, a one-line ``"error"``.

    {"cmd": "status"}                          -> {"ok": true, "status": {...}}
    {"cmd": "at", "modem": "modem1", "command": "AT+CSQ", "timeout": 5}
        -> {"ok": true, "lines": [...], "final": "OK", "error": false}
    {"cmd": "hotplug", "subsystem": "iface", "env": {"ACTION": "ifup", ...}}
                                               -> {"ok": true}
    {"cmd": "reload"}                          -> {"ok": true} or {"ok": false, "error": "..."}

The client side is deliberately stdlib-only and blocking so that short
commands (``status``, the hotplug hand-off) start fast on a router: it must
not pull asyncio or pyroute2 in.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from typing import Any

MAX_MESSAGE = 1 << 20  # a status object is a few kB; refuse anything absurd


class ControlError(Exception):
    """A control-socket failure, with a one-line message that says what to do."""


class DaemonNotRunning(ControlError):
    pass


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("a control message must be a JSON object")
    return value


def socket_for_config(config_path: str) -> str:
    """The control socket a configuration file names, even when the file has other problems."""
    from remsim_supervisor.config import ConfigError, SupervisorConfig, load

    try:
        return load(config_path).supervisor.control_socket
    except ConfigError:
        pass
    try:
        from remsim_supervisor import uci

        with open(config_path, encoding="utf-8", errors="replace") as f:
            sections, _problems = uci.parse(f.read())
        for section in sections:
            if section.type == "supervisor" and "control_socket" in section.options:
                return section.options["control_socket"].value
    except OSError:
        pass
    return SupervisorConfig().control_socket


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def peer_allowed(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def socket_in_use(path: str) -> bool:
    """True when a live daemon answers on ``path``; False for none or a stale file."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()
    return True


def request(path: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the daemon and return its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(
                f"no daemon answers on {path} (start it: /etc/init.d/remsim-supervisor start)"
            ) from exc
        except PermissionError as exc:
            raise ControlError(f"no permission to use {path}: run as root") from exc
        sock.sendall(encode(message))
        buffer = b""
        while not buffer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > MAX_MESSAGE:
                raise ControlError("the daemon's answer is too large")
    except TimeoutError as exc:
        raise ControlError(f"the daemon did not answer on {path} within {timeout:g} s") from exc
    finally:
        sock.close()
    if not buffer:
        raise ControlError(f"the daemon on {path} closed the connection without an answer")
    try:
        return decode(buffer)
    except ValueError as exc:
        raise ControlError(f"the daemon on {path} sent an unreadable answer: {exc}") from exc
