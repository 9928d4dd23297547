"""The heartbeat path's rules and routes as values, and the difference between two states.

Pure logic, no I/O: :func:`diff` takes the desired state (:class:`Desired`:
one rule ``to PIN lookup TABLE pref PRIORITY`` per pinned address, one per
address family for the firewall mark when there is one, and the default
routes of the path and its standbys) and what the kernel holds (every
:class:`Rule` and :class:`Route` it listed), and returns the operations that
make the two agree, in a safe order. The executor
(:class:`~remsim_supervisor.adapters.routing.Router`) reads the kernel,
applies the operations and asks again until nothing is left to do.

What is ours is exactly what sits at our preference *and* our table (rules)
and whatever is in our table (routes). Everything else in the kernel's lists
(mwan3's preferences 1001-3062 and tables 1-60, netifd's rules at
10000/20000, another rule at our preference or in another table) is left
alone. Among ours, one rule per pin is kept; duplicates, stale pins and
rules of a shape we would not add (a crash's leftovers, a hand-made rule)
are removed, as are routes that are not wanted.

The order: additions before removals, the routes before the rules. A route
``replace`` swaps the path atomically (no instant with an empty table), a
new pin's rule finds its route in place, and a pin is never without a rule
while a duplicate of it is removed. When a route had to be put, removals
wait for the next look: the replace may have displaced a stale route.

:class:`Changes` says what a reconcile added and removed, in the words of
``ip`` (``rule to 203.0.113.20 lookup 240 pref 90``). :func:`reserved_table`
and :func:`reserved_priority` say which tables and preferences belong to the
kernel, mwan3 or netifd and so can never be ours.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RT_PROTO = 0xFD
"""Protocol tag (``rtm_protocol``, ``FRA_PROTOCOL``) of what we add: 253.

Unassigned: neither a kernel ``RTPROT_*`` value nor an iproute2 rt_protos
name (those are 0-4, 8-18, 42, 84, 99 and 186-192). It only labels; what is ours
is decided by table and preference. ``ip route show table all proto 253``
lists our routes."""

FAMILIES = (socket.AF_INET, socket.AF_INET6)
HOST_LEN: dict[int, int] = {socket.AF_INET: 32, socket.AF_INET6: 128}
# The kernel gives an IPv6 route added without a metric 1024 (IPv4: 0); we
# state it explicitly so what we add and what a dump shows compare equal.
METRIC: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 1024}
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
PROTO_NAMES = {0: "unspec", 2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp"}
ROUTE_TYPES = {2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
               7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


def reserved_table(table: int) -> str | None:
    """Whose table ``table`` is when it cannot be ours, with the fix; None when it may be."""
    if table in (253, 254, 255):
        return ("253, 254 and 255 are the kernel's default, main and local tables; "
                "use a table of the supervisor's own, such as 240")
    if 1 <= table <= 60:
        return "mwan3 numbers its interface tables 1-60; use one outside, such as 240"
    return None


def reserved_priority(priority: int) -> str | None:
    """Whose rule preference ``priority`` is when it cannot be ours, with the fix; else None."""
    if priority in (0, 32766, 32767):
        return ("0, 32766 and 32767 are the kernel's local, main and default rules; "
                "use one such as 90")
    if 1001 <= priority <= 3062:
        return ("mwan3 owns rule preferences 1001-3062 and deletes them when it stops; "
                "use one below 1001, such as 90")
    if priority in (10000, 20000):
        return "netifd puts its source rules there; use one such as 90"
    return None


@dataclass(frozen=True)
class Rule:
    """A policy rule as the kernel lists it (or as we would add it)."""

    family: int
    priority: int
    table: int
    dst: str | None
    dst_len: int
    protocol: int | None  # None: the kernel does not report FRA_PROTOCOL (before 4.17)
    # What the rule matches on besides "to DST", as ip writes it: a pin rule
    # we add has none. The selectors named alike in every pyroute2 version are
    # also kept as rule() keywords, so the rule can be deleted precisely.
    text_parts: tuple[str, ...] = ()
    selectors: tuple[tuple[str, Any], ...] = ()

    @property
    def pin(self) -> str | None:
        """The pinned address, when this is exactly a pin rule we would add."""
        if self.text_parts or self.dst is None or self.dst_len != HOST_LEN[self.family]:
            return None
        if self.protocol not in (None, RT_PROTO):
            return None
        return self.dst

    def is_mark(self, mark: int | None) -> bool:
        """Whether this is exactly the firewall-mark rule we would add for ``mark``."""
        if mark is None or self.dst is not None or self.protocol not in (None, RT_PROTO):
            return False
        return dict(self.selectors) == {"fwmark": mark, "fwmask": mark}

    def text(self) -> str:
        words = ["rule"]
        if self.family == socket.AF_INET6 and self.dst is None:
            words.append("-6")
        words.extend(self.text_parts)
        if self.dst is not None:
            full = self.dst_len == HOST_LEN[self.family]
            words.append(f"to {self.dst}" if full else f"to {self.dst}/{self.dst_len}")
        if len(words) == 1 or words == ["rule", "-6"]:
            words.append("from all")
        words.append(f"lookup {self.table} pref {self.priority}")
        if self.protocol not in (None, RT_PROTO):
            words.append(f"proto {PROTO_NAMES.get(self.protocol, self.protocol)}")
        return " ".join(words)


def pin_rule(family: int, address: str, table: int, priority: int) -> Rule:
    """The rule that sends traffic to ``address`` to our table."""
    return Rule(family, priority, table, address, HOST_LEN[family], RT_PROTO)


def mark_rule(family: int, mark: int, table: int, priority: int) -> Rule:
    """The rule that sends packets carrying our firewall mark to our table."""
    return Rule(family, priority, table, None, 0, RT_PROTO,
                text_parts=(f"fwmark {mark:#x}/{mark:#x}",),
                selectors=(("fwmark", mark), ("fwmask", mark)))


@dataclass(frozen=True)
class Route:
    """A route as the kernel lists it (or as we would add it)."""

    family: int
    table: int
    dst: str | None
    dst_len: int
    gateway: str | None
    oif: int | None
    device: str | None
    metric: int
    proto: int
    scope: int
    type: int
    tos: int = 0
    multipath: bool = False

    def same(self, other: Route) -> bool:
        """Equal in everything routing depends on (the device name is a label)."""
        return (self.family, self.table, self.dst, self.dst_len, self.gateway, self.oif,
                self.metric, self.proto, self.scope, self.type, self.tos, self.multipath) == (
            other.family, other.table, other.dst, other.dst_len, other.gateway, other.oif,
            other.metric, other.proto, other.scope, other.type, other.tos, other.multipath)

    def text(self) -> str:
        words = ["route" if self.family == socket.AF_INET else "route -6"]
        if self.type != RTN_UNICAST:
            words.append(ROUTE_TYPES.get(self.type, f"type {self.type}"))
        words.append("default" if self.dst_len == 0 else f"{self.dst}/{self.dst_len}")
        if self.multipath:
            words.append("multipath")
        if self.gateway:
            words.append(f"via {self.gateway}")
        if self.oif is not None:
            words.append(f"dev {self.device or f'if{self.oif}'}")
        words.append(f"table {self.table}")
        if self.metric != METRIC[self.family]:
            words.append(f"metric {self.metric}")
        if self.proto != RT_PROTO:
            words.append(f"proto {PROTO_NAMES.get(self.proto, self.proto)}")
        return " ".join(words)


def default_route(family: int, table: int, gateway: str | None, oif: int, device: str,
                  metric_offset: int = 0) -> Route:
    """Our default route through ``device``: ``via gateway``, or by device alone
    (point to point) when ``gateway`` is None. Standby paths get a higher metric."""
    link_only = gateway is None and family == socket.AF_INET
    return Route(family=family, table=table, dst=None, dst_len=0, gateway=gateway, oif=oif,
                 device=device, metric=METRIC[family] + metric_offset, proto=RT_PROTO,
                 scope=RT_SCOPE_LINK if link_only else RT_SCOPE_UNIVERSE, type=RTN_UNICAST)


@dataclass(frozen=True)
class Desired:
    """What our table and preference should hold."""

    table: int
    priority: int
    pins: tuple[tuple[int, str], ...] = ()  # (family, canonical address)
    routes: tuple[Route, ...] = ()
    mark: int | None = None


@dataclass(frozen=True)
class Operation:
    """One change to the kernel: put (replace) a route, add a rule, remove either."""

    action: Literal["put", "add", "remove"]
    item: Rule | Route

    def text(self) -> str:
        return f"{self.action} {self.item.text()}"


def owned_rules(rules: Iterable[Rule], table: int, priority: int) -> list[Rule]:
    """The rules that are ours: at our preference *and* our table."""
    return [r for r in rules if r.priority == priority and r.table == table]


def owned_routes(routes: Iterable[Route], table: int) -> list[Route]:
    """The routes that are ours: every route in our table."""
    return [r for r in routes if r.table == table]


def diff(desired: Desired, rules: Iterable[Rule], routes: Iterable[Route]) -> list[Operation]:
    """The operations that make the kernel's ``rules`` and ``routes`` hold ``desired``.

    Rules and routes that are not ours are ignored, whatever they look like.
    An empty list: the two agree. The list may be only the first step (when a
    route had to be put); applying it and asking again converges.
    """
    ours = owned_rules(rules, desired.table, desired.priority)
    present = owned_routes(routes, desired.table)
    kept_pins: set[tuple[int, str]] = set()
    kept_marks: set[int] = set()
    stale_rules: list[Rule] = []
    for rule in ours:
        key = (rule.family, rule.pin or "")
        if rule.pin is not None and key in desired.pins and key not in kept_pins:
            kept_pins.add(key)
        elif rule.is_mark(desired.mark) and rule.family not in kept_marks:
            kept_marks.add(rule.family)
        else:
            stale_rules.append(rule)  # a duplicate, a stale pin, or not our shape
    missing_rules = [pin_rule(family, address, desired.table, desired.priority)
                     for family, address in dict.fromkeys(desired.pins)
                     if (family, address) not in kept_pins]
    if desired.mark is not None:
        missing_rules += [mark_rule(family, desired.mark, desired.table, desired.priority)
                          for family in FAMILIES if family not in kept_marks]
    kept: set[int] = set()  # indexes into present
    missing_routes: list[Route] = []
    for want in desired.routes:
        match = next((i for i, r in enumerate(present) if i not in kept and r.same(want)), None)
        if match is None:
            missing_routes.append(want)
        else:
            kept.add(match)
    stale_routes = [r for i, r in enumerate(present) if i not in kept]
    ops = [Operation("put", r) for r in missing_routes]
    ops += [Operation("add", r) for r in missing_rules]
    if missing_routes:
        return ops  # removals on the next look: a replace may have displaced a stale route
    ops += [Operation("remove", r) for r in stale_rules]
    ops += [Operation("remove", r) for r in stale_routes]
    return ops


@dataclass(frozen=True)
class Changes:
    """What a call added and removed, one ``ip``-style line each, for the log."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def __str__(self) -> str:
        parts = [f"+{item}" for item in self.added] + [f"-{item}" for item in self.removed]
        return "; ".join(parts) if parts else "no change"


def changes(before: Sequence[str], after: Sequence[str]) -> Changes:
    """The lines that appeared and disappeared between two listings of what is ours."""
    return Changes(added=_difference(after, before), removed=_difference(before, after))


def _difference(before: Sequence[str], after: Sequence[str]) -> tuple[str, ...]:
    """Items of ``before`` not in ``after``, counting duplicates, in order."""
    left = Counter(after)
    out: list[str] = []
    for item in before:
        if left[item]:
            left[item] -= 1
        else:
            out.append(item)
    return tuple(out)


__all__ = [
    "FAMILIES",
    "HOST_LEN",
    "METRIC",
    "RT_PROTO",
    "Changes",
    "Desired",
    "Operation",
    "Route",
    "Rule",
    "changes",
    "default_route",
    "diff",
    "mark_rule",
    "owned_routes",
    "owned_rules",
    "pin_rule",
    "reserved_priority",
    "reserved_table",
]
