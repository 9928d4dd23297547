"""What the hooks send over ubus, and what the daemon takes of it: pure, untrusted input.

On a router the hotplug hooks and osmo-remsim-client's event script hand
their events to a running daemon with ``ubus send remsim-supervisor.hook
JSON``, from the shell, without starting Python (docs/remsim-events.md). The
daemon hears them through ``ubus listen remsim-supervisor.hook``, which
prints one line per event::

    { "remsim-supervisor.hook": {"hook": "event", "cause": "request-sim-remote",
      "env": {"REMSIM_BANKD_ADDR": "203.0.113.30:9999"},
      "origin": {"pid": "4242", "ticks": "123456"}} }
    { "remsim-supervisor.hook": {"hook": "hotplug", "subsystem": "iface",
      "env": {"ACTION": "ifup", "INTERFACE": "wwan", "DEVICE": "wwan0"}} }
    { "remsim-supervisor.hook": {"probe": "TOKEN"} }

Anyone on the bus may send that event, so a line is data: :func:`parse_line`
turns it into a :class:`EventHook`, a :class:`HotplugHook` or a
:class:`Probe` (the daemon's own check that its listener hears), or raises
:class:`WireError` with one line saying what is wrong. Lines are capped at
:data:`MAX_LINE` bytes, variables at the control socket's caps (32 of at
most 256 characters, control characters dropped), numbers are digit strings (a
shell has no other; and they stay exact past 32 bits on any libubox).

:func:`~remsim_supervisor.core.hookvars.event_environment` is the one rule
for which of osmo-remsim-client's variables an event carries, for the
``event`` command and for the listener alike. Nothing here reads a clock, a
file or the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remsim_supervisor.core.hookvars import (
    EXTRA_VARIABLES,
    MAX_NAME,
    MAX_VALUE,
    MAX_VARIABLES,
    OWN_PREFIX,
    clean,
    event_environment,
)

__all__ = [
    "EXTRA_VARIABLES",
    "HOOK_EVENT",
    "MAX_LINE",
    "MAX_NAME",
    "MAX_VALUE",
    "MAX_VARIABLES",
    "OWN_PREFIX",
    "SUBSYSTEMS",
    "EventHook",
    "HotplugHook",
    "Probe",
    "WireError",
    "clean",
    "event_environment",
    "parse_line",
]

HOOK_EVENT = "remsim-supervisor.hook"  # the ubus event type the hooks send
MAX_LINE = 16384  # bytes of one line of `ubus listen`; a real message is under 6 kB
SUBSYSTEMS = ("iface", "usb")
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CAUSE = re.compile(r"[a-z][a-z-]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_TOKEN = re.compile(r"[A-Za-z0-9]{1,64}")


class WireError(ValueError):
    """A line that is not a hook message; the text is one line saying why."""


@dataclass(frozen=True)
class EventHook:
    """One osmo-remsim event: its cause, its variables and its process's (pid, start tick)."""

    cause: str
    env: Mapping[str, str] = field(default_factory=dict)
    pid: int | None = None
    ticks: int | None = None


@dataclass(frozen=True)
class HotplugHook:
    """One hotplug event (``iface`` or ``usb``) with the hook's variables."""

    subsystem: str
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """The daemon's own message, sent to learn that its listener hears the bus."""

    token: str


def _hotplug_environment(env: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in sorted(env):
        if not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise WireError(f"hotplug variable name {str(name)[:40]!r} is not NAME_LIKE_THIS")
        if len(out) >= MAX_VARIABLES:
            raise WireError(f"more than {MAX_VARIABLES} hotplug variables")
        value = env[name]
        if not isinstance(value, str):
            raise WireError(f"hotplug variable {name} is not a string")
        out[name] = clean(value, MAX_VALUE)
    return out


def _number(value: Any, what: str) -> int:
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise WireError(f"origin {what} is not a number")


def parse_line(line: bytes) -> EventHook | HotplugHook | Probe:
    """One line of ``ubus listen remsim-supervisor.hook``; WireError if it is not a message."""
    if len(line) > MAX_LINE:
        raise WireError(f"line longer than {MAX_LINE} bytes")
    try:
        outer = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("not JSON") from None
    if not isinstance(outer, dict) or set(outer) != {HOOK_EVENT}:
        raise WireError(f"not a {HOOK_EVENT} event")
    body = outer[HOOK_EVENT]
    if not isinstance(body, dict):
        raise WireError("the message is not an object")
    if "probe" in body:
        token = body["probe"]
        if not (isinstance(token, str) and _TOKEN.fullmatch(token)):
            raise WireError("a probe without a token")
        return Probe(token)
    env = body.get("env", {})
    if not isinstance(env, dict):
        raise WireError("env is not an object")
    kind = body.get("hook")
    if kind == "event":
        cause = body.get("cause")
        if not (isinstance(cause, str) and _CAUSE.fullmatch(cause)):
            raise WireError("the event has no cause of lower-case words")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise WireError("event variables are not strings")
        origin = body.get("origin")
        pid = ticks = None
        if origin is not None:
            if not isinstance(origin, dict):
                raise WireError("origin is not an object")
            pid, ticks = _number(origin.get("pid"), "pid"), _number(origin.get("ticks"), "ticks")
            if pid <= 0:
                raise WireError("origin pid is not a process")
        return EventHook(cause, event_environment(env), pid, ticks)
    if kind == "hotplug":
        subsystem = body.get("subsystem")
        if subsystem not in SUBSYSTEMS:
            raise WireError(f"hotplug subsystem is none of {', '.join(SUBSYSTEMS)}")
        return HotplugHook(str(subsystem), _hotplug_environment(env))
    raise WireError("hook is neither 'event' nor 'hotplug'")
