"""The coalescing rule for osmo-remsim-client's events, pure: events and memory in, a plan out.

osmo-remsim-client starts its event script for every event without waiting,
so the events of one transition (``request-sim-remote``,
``request-card-insert``, ``request-modem-reset``, ...) reach the supervisor
concurrently and in any order. The rule turns them back into what the
ordered sequence means: per transition, the primary modem's SIM line moved at
most once, then the modem reset exactly once. The rule, in full, is in
``docs/remsim-events.md``; in short:

* A **batch** is every event that arrives until none has arrived for
  ``settle_s``; while the batch has card or reset requests but no SIM
  request yet (its SIM request is still on its way), until that request
  comes or ``MAX_BATCH_SETTLES`` windows have passed; never longer than
  ``MAX_BATCH_SETTLES`` windows in all (:func:`settle_due`).
* Its **side** is the SIM request the client issued last: by the client's
  spawning order when every SIM request carries its origin (process start
  tick, then pid), else by arrival. A request older than one already applied
  is stale and ignored.
* The line is set when the side differs from the line's; the modem is reset
  **once** if the line was switched or the batch holds a reset request whose
  process started after the last reset began (an older one is a straggler
  that reset already served).
* ``event-config-bankd`` and ``event-server-connect`` pin the bankd and
  remsim-server addresses at once, without waiting for the batch.

:func:`plan` is that rule (a :class:`Plan` out), shared by the daemon's
:class:`~remsim_supervisor.supervisor.simswitch.SimSwitcher` and the
no-daemon worker of :mod:`remsim_supervisor.cli.event_worker`.
:func:`parse_hostport` reads the client's ``host:port`` values, which are
data from another process and never guessed at. Nothing here reads a clock,
a file or a line: times come in on the events.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BANKD_PORT",
    "CONFIG_BANKD",
    "KNOWN_CAUSES",
    "MAX_BATCH_SETTLES",
    "MAX_PENDING",
    "MODEM_STATUS",
    "SERVER_CONNECT",
    "SERVER_PORT",
    "Event",
    "Memory",
    "Plan",
    "format_hostport",
    "origin_from_wire",
    "parse_hostport",
    "plan",
    "remember",
    "settle_due",
    "side_name",
]

SIM_REMOTE, SIM_LOCAL = "request-sim-remote", "request-sim-local"
CARD_INSERT, CARD_REMOVE = "request-card-insert", "request-card-remove"
MODEM_RESET = "request-modem-reset"
SERVER_CONNECT, CONFIG_BANKD = "event-server-connect", "event-config-bankd"
BANKD_CONNECT, MODEM_STATUS = "event-bankd-connect", "event-modem-status"

KNOWN_CAUSES: frozenset[str] = frozenset(
    {
        SERVER_CONNECT,
        CONFIG_BANKD,
        BANKD_CONNECT,
        MODEM_STATUS,
        SIM_REMOTE,
        SIM_LOCAL,
        CARD_INSERT,
        CARD_REMOVE,
        MODEM_RESET,
    }
)
_SIDE = {SIM_REMOTE: True, SIM_LOCAL: False}
# A batch holding these but no SIM request waits longer: in the client's code
# they never come without the SIM request of the same transition.
_TRANSITION = frozenset({CARD_INSERT, CARD_REMOVE, MODEM_RESET})

SERVER_PORT = 9998  # remsim-server's RSPRO port
BANKD_PORT = 9999  # osmo-remsim-bankd's
MAX_BATCH_SETTLES = 10  # a stream of events cannot postpone its batch for ever
MAX_PENDING = 256  # events kept while nothing consumes them

def side_name(remote: bool | None) -> str | None:
    return None if remote is None else ("remote" if remote else "local")


# --- host:port from the client ---

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NO_HOST = ("", "(null)")  # what the client prints before a bankd is configured


def parse_hostport(value: str | None, default_port: int) -> tuple[str, int] | None:
    """``(host, port)`` from the client's ``host:port`` (``[v6]:port``; no port: the default).

    None when the value names no peer: unset, empty, ``(null)`` (the client's
    rendering of "none yet", also as ``(null):0``), port 0, or the unspecified
    address. ValueError, saying why, for anything else that is not an IP
    address or a DNS name with a port: the value is data from another
    process, never a command and never guessed at.
    """
    if value is None:
        return None
    text = value.strip()
    if text in _NO_HOST:
        return None
    if len(text) > 270 or not text.isascii() or not text.isprintable():
        raise ValueError("not an address: too long or not printable ASCII")
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("not an address: write [IPv6]:PORT")
        port = _port(rest[1:]) if rest else default_port
        address: str = _ip(host, version=6)
    elif text.count(":") > 1:  # a bare IPv6 address: no room for a port
        address, port = _ip(text, version=6), default_port
    else:
        host, colon, digits = text.partition(":")
        if host in _NO_HOST:
            return None
        port = _port(digits) if colon else default_port
        address = _host(host)
    if port == 0 or address in ("0.0.0.0", "::"):
        return None
    return address, port


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(digits: str) -> int:
    if not digits.isdigit() or len(digits) > 5 or int(digits) > 65535:
        raise ValueError("not an address: the port must be a number from 0 to 65535")
    return int(digits)


def _ip(text: str, version: int) -> str:
    # ipaddress takes any text after '%' as an IPv6 scope: allow interface names only.
    _address, percent, scope = text.partition("%")
    if percent and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", scope):
        raise ValueError("not an address: the IPv6 scope must be an interface name")
    try:
        return str(ipaddress.IPv6Address(text) if version == 6 else ipaddress.IPv4Address(text))
    except ValueError:
        raise ValueError(f"not an address: not an IPv{version} address") from None


def _host(text: str) -> str:
    if re.fullmatch(r"[0-9.]+", text):
        return _ip(text, version=4)
    labels = text.lower().split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("not an address: neither an IP address nor a DNS name")
    return text.lower()


# --- the rule ---


@dataclass(frozen=True)
class Event:
    """One event as the coalescing rule sees it; times on the consumer's clock.

    ``order`` is the client's spawning order of the event's process, ``(start
    tick, pid)``; ``started`` when that process started. Both are None when
    the event came without its origin.
    """

    cause: str
    at: float
    seq: int = 0
    order: tuple[int, int] | None = None
    started: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Memory:
    """What the rule remembers between batches."""

    last_reset_at: float | None = None  # when the latest reset began
    applied_order: tuple[int, int] | None = None  # origin of the latest applied SIM request


@dataclass(frozen=True)
class Plan:
    side: bool | None  # the SIM the batch asks for: True remote, False local, None no request
    switch: bool  # the line must move
    requested_reset: bool  # a reset request not satisfied by an earlier reset
    causes: tuple[str, ...]
    chosen: Event | None = None  # the SIM request that decided the side

    @property
    def reset(self) -> bool:
        return self.switch or self.requested_reset

    @property
    def idle(self) -> bool:
        return not self.switch and not self.requested_reset

    def describe(self) -> str:
        parts = []
        if self.switch:
            parts.append(f"{side_name(self.side)} SIM selected")
        elif self.side is not None:
            parts.append(f"already on the {side_name(self.side)} SIM")
        if self.reset:
            parts.append("modem reset")
        return ", ".join(parts) or "nothing to do"


def settle_due(batch: Sequence[Event], settle_s: float) -> float:
    """When ``batch`` may be applied (its clock): see the module's rule."""
    first = min(e.at for e in batch)
    last = max(e.at for e in batch)
    causes = {e.cause for e in batch}
    if causes & _TRANSITION and not causes & _SIDE.keys():
        # Both of osmo-remsim's sequences carry a SIM request: a batch of card
        # and reset requests without one is a transition whose SIM request is
        # still on its way (event processes start slowly on a loaded router),
        # so it waits for it, up to the batch's limit.
        return first + MAX_BATCH_SETTLES * settle_s
    return min(last + settle_s, first + MAX_BATCH_SETTLES * settle_s)


def plan(batch: Sequence[Event], current: bool | None, memory: Memory) -> Plan:
    """The net effect of one batch on a line selecting ``current`` (None: unknown)."""
    requests = [e for e in batch if e.cause in _SIDE]
    if memory.applied_order is not None:
        requests = [e for e in requests if e.order is None or e.order > memory.applied_order]
    chosen: Event | None = None
    if requests:
        if all(e.order is not None for e in requests):
            chosen = max(requests, key=lambda e: (e.order, e.seq))
        else:
            chosen = max(requests, key=lambda e: (e.at, e.seq))
    side = _SIDE[chosen.cause] if chosen is not None else None
    switch = side is not None and side != current
    requested_reset = any(e.cause == MODEM_RESET and not _satisfied(e, memory) for e in batch)
    causes = tuple(e.cause for e in sorted(batch, key=lambda e: (e.order or (0, 0), e.seq)))
    return Plan(side, switch, requested_reset, causes, chosen)


def _satisfied(event: Event, memory: Memory) -> bool:
    # A reset that began after this request's process started has done what it asks.
    return (
        event.started is not None
        and memory.last_reset_at is not None
        and event.started <= memory.last_reset_at
    )


def remember(memory: Memory, done: Plan, reset_at: float | None) -> None:
    """Fold an applied plan into ``memory``."""
    order = done.chosen.order if done.chosen is not None else None
    if order is not None and (memory.applied_order is None or order > memory.applied_order):
        memory.applied_order = order
    if reset_at is not None:
        memory.last_reset_at = reset_at


def origin_from_wire(value: Any) -> tuple[tuple[int, int], float] | None:
    """``((tick, pid), age_s)`` from an event's ``origin`` object, None if it is not one."""
    if not isinstance(value, Mapping):
        return None
    ticks, pid, age = value.get("ticks"), value.get("pid"), value.get("age_s")
    if not (isinstance(ticks, int) and isinstance(pid, int) and isinstance(age, (int, float))):
        return None
    if isinstance(ticks, bool) or isinstance(pid, bool) or ticks < 0 or pid <= 0:
        return None
    if not 0.0 <= float(age) < 3600.0:  # an hour-old "event" is no event of a burst
        return None
    return (ticks, pid), float(age)
