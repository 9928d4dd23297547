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

Limits. The socket is root's, but a confused or broken client must not
hurt the daemon either: at most :data:`MAX_CONNECTIONS` connections are
served at once (one more is answered "too many" and closed), a client that
sends no complete request within :data:`IDLE_TIMEOUT_S` is answered and
closed, a request is at most :data:`MAX_REQUEST` bytes and nests JSON at
most :data:`MAX_DEPTH` deep, and every field has the type its command
expects (:func:`parse_request`). Every refusal is a one-line ``"error"``
answer; none is logged as a failure of the daemon's.

The socket file is created by the daemon and removed when it stops. At
start a *socket* left at that path by a crash is removed; anything else
there (a regular file, a directory, a symlink) is refused and left alone
(:func:`clear_stale_socket`).

The client side is deliberately stdlib-only and blocking so that short
commands (``status``, the hotplug hand-off) start fast on a router: it must
not pull asyncio or pyroute2 in.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import struct
from typing import Any

MAX_MESSAGE = 1 << 20  # a status object is a few kB; refuse anything absurd

#: Longest request line the daemon reads (the largest real one, a hotplug
#: event's environment, is well under 4 kB).
MAX_REQUEST = 64 * 1024
#: Deepest nesting of objects and arrays in a request (real ones use 2).
MAX_DEPTH = 8
#: Connections served at once; more are refused at once.
MAX_CONNECTIONS = 32
#: Seconds a client has to send its request.
IDLE_TIMEOUT_S = 5.0
#: Longest timeout (s) a request may ask for, by command.
MAX_TIMEOUT_S = {"at": 600.0, "reset": 3600.0}


class ControlError(Exception):
    """A control-socket failure, with a one-line message that says what to do."""


class DaemonNotRunning(ControlError):
    pass


class BadRequest(ControlError):
    """A request the daemon will not act on; the message is the one-line answer."""


class NotASocket(ControlError):
    """Something other than a socket sits where the control socket belongs."""


# Fields each request may carry, with the types they must have. ``None`` is
# always allowed for an optional field; ``bool`` never counts as a number.
_NUMBER = (int, float)
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "status": {},
    "reload": {},
    "at": {"modem": (str,), "command": (str,), "timeout": _NUMBER},
    "reset": {"modem": (str,), "level": (str,), "timeout": _NUMBER},
    "hotplug": {"subsystem": (str,), "env": (dict,)},
    "event": {"cause": (str,), "env": (dict,), "origin": (dict,)},
}
_REQUIRED = {"at": ("modem", "command"), "reset": ("modem",), "event": ("cause",)}
_TYPE_NAMES = {str: "a string", dict: "an object", int: "a number", float: "a number"}


def json_depth(text: str, limit: int) -> int:
    """The nesting depth of the JSON ``text``, counting no further than ``limit + 1``.

    A linear scan that skips strings: deep nesting is refused before the
    recursive ``json`` decoder ever sees it.
    """
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_request(line: bytes) -> dict[str, Any]:
    """The request on one line, checked; BadRequest with a one-line message otherwise."""
    if len(line) > MAX_REQUEST:
        raise BadRequest(f"request larger than {MAX_REQUEST} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not UTF-8") from None
    if not text.strip():
        raise BadRequest("empty request: send one JSON object on one line")
    if json_depth(text, MAX_DEPTH) > MAX_DEPTH:
        raise BadRequest(f"request nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadRequest(f"request is not JSON: {first}") from None
    if not isinstance(value, dict):
        raise BadRequest("a request must be a JSON object")
    cmd = value.get("cmd")
    if not isinstance(cmd, str):
        raise BadRequest("a request needs \"cmd\" as a string")
    fields = _FIELDS.get(cmd)
    if fields is None:
        raise BadRequest(f"unknown request {cmd[:40]!r}: one of {', '.join(sorted(_FIELDS))}")
    for name, types in fields.items():
        item = value.get(name)
        if item is None:
            if name in _REQUIRED.get(cmd, ()):
                raise BadRequest(f"{cmd}: {name!r} is required")
            continue
        if isinstance(item, bool) or not isinstance(item, types):
            raise BadRequest(f"{cmd}: {name!r} must be {_TYPE_NAMES[types[0]]}")
    if "env" in fields and isinstance(value.get("env"), dict):
        for key, item in value["env"].items():
            if not isinstance(item, str):
                raise BadRequest(f"{cmd}: env {key[:40]!r} must be a string")
    if "timeout" in fields and value.get("timeout") is not None:
        top = MAX_TIMEOUT_S[cmd]
        try:
            timeout = float(value["timeout"])
        except OverflowError:
            timeout = float("inf")
        if not 0 < timeout <= top:
            raise BadRequest(f"{cmd}: 'timeout' must be more than 0 and at most {top:g} s")
    return value


def clear_stale_socket(path: str) -> None:
    """Make ``path`` free for the daemon's socket, touching nothing but a stale socket.

    A socket no daemon answers on (left by a crash) is removed. A live daemon's
    socket raises ControlError; anything that is not a socket raises NotASocket
    and stays as it is.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        kind = ("a symbolic link" if stat.S_ISLNK(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a regular file" if stat.S_ISREG(mode) else "not a socket")
        raise NotASocket(f"control_socket {path} exists and is {kind}, not a socket: left "
                         "untouched; remove it or set another control_socket")
    if socket_in_use(path):
        raise ControlError(f"another remsim-supervisor answers on {path}: stop it first")
    os.unlink(path)


def remove_socket(path: str) -> None:
    """Remove the daemon's socket at ``path``, if a socket is what is there."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
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
        from remsim_supervisor.config import uci

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
