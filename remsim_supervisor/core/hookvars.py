"""Which of osmo-remsim-client's variables an event carries: one rule, pure.

The ``event`` command (a Python start per event where ubus cannot be used)
and the daemon's ubus listener (:mod:`remsim_supervisor.core.hookwire`) take
the same variables the same way: ``REMSIM_*`` (never our own
``REMSIM_SUPERVISOR_*`` hooks) and ``OPENWRT_MODEM_DEVICE``, at most 32 of at
most 256 characters, control characters dropped. Kept apart and small, since
the command imports it on every event.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "EXTRA_VARIABLES",
    "MAX_NAME",
    "MAX_VALUE",
    "MAX_VARIABLES",
    "OWN_PREFIX",
    "clean",
    "event_environment",
]

OWN_PREFIX = "REMSIM_SUPERVISOR_"  # our own hooks: never taken from an event's environment
EXTRA_VARIABLES = ("OPENWRT_MODEM_DEVICE",)
MAX_VARIABLES = 32
MAX_NAME = 64
MAX_VALUE = 256


def clean(text: str, limit: int) -> str:
    """``text`` without control characters (C0, DEL, C1) or lone surrogates, cut at ``limit``."""
    # The value may end up in a log line, and it is data, never markup or commands.
    kept = (c for c in text if c.isprintable() or c == " ")
    return "".join(c for c in kept if not "\ud800" <= c <= "\udfff")[:limit]


def event_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The client's variables as plain, capped strings: ``REMSIM_*`` (never our own
    ``REMSIM_SUPERVISOR_*``) and ``OPENWRT_MODEM_DEVICE``, at most 32, sorted by name."""
    out: dict[str, str] = {}
    for name in sorted(environ):
        if not (name.startswith("REMSIM_") or name in EXTRA_VARIABLES):
            continue
        if name.startswith(OWN_PREFIX) or len(name) > MAX_NAME:
            continue
        if not name.replace("_", "").isalnum() or not name.isascii():
            continue
        if len(out) >= MAX_VARIABLES:
            break
        value = environ[name]
        out[name] = clean(value if isinstance(value, str) else "", MAX_VALUE)
    return out
