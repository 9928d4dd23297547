"""The heartbeat path in the kernel: policy rules to pinned hosts, one table of our own.

Every pinned address (IonMesh, remsim-server, bankd, extra ``pin`` entries)
gets one rule ``to ADDR/32 lookup TABLE pref PRIORITY`` (``/128`` for IPv6),
and TABLE holds one default route through the active path: ``via GATEWAY dev
DEVICE`` (``dev DEVICE`` alone on point-to-point links), for IPv4 and, when
the path carries IPv6, for IPv6. Moving the path rewrites that one route; the
rules never change for it. With no path the table is left empty, so pinned
traffic falls through our rule to the main table (see docs/routing.md).

:class:`Router` reconciles: it reads what the kernel holds, compares it with
the desired state and applies the difference, then reads again until both
agree. Ours is exactly what sits at our preference *and* our table (rules)
and whatever is in our table (routes); we tag what we add with
:data:`RT_PROTO` (``FRA_PROTOCOL`` on rules needs Linux 4.17), but the
preference/table pair is what identifies a rule, on every kernel. Nothing
else is touched: not mwan3's preferences 1001-3062 and tables 1-60, not
netifd's rules at 10000/20000, not another rule at our preference.
Duplicates and stale pins that a crash left behind are removed; running it
twice changes nothing. :class:`Changes` reports what was added and removed,
in the words of ``ip`` (``rule to 203.0.113.20 lookup 240 pref 90``).

Threads: pyroute2 0.9's synchronous ``IPRoute`` cannot be used inside a
running asyncio loop, and 0.7.9 (OpenWrt) has no asyncio API, so ``Router``
is plain synchronous code for a worker thread (``asyncio.to_thread``); it
refuses, with a :class:`RoutingError`, to run on a thread with a running
loop, so the mistake shows on 0.7.9 too. Calls are serialised by a lock; the
netlink socket opens on first use and reopens after a socket error. pyroute2
is imported only then, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Self

RT_PROTO = 0xFD
"""Protocol tag (``rtm_protocol``, ``FRA_PROTOCOL``) of what we add: 253.

Unassigned: neither a kernel ``RTPROT_*`` value nor an iproute2 rt_protos
name (those are 0-4, 8-18, 42, 84, 99 and 186-192). It only labels; what is ours
is decided by table and preference. ``ip route show table all proto 253``
lists our routes."""

DEFAULT_TABLE = 240
DEFAULT_PRIORITY = 90

_MAIN_TABLE = 254
_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_HOST_LEN: dict[int, int] = {socket.AF_INET: 32, socket.AF_INET6: 128}
# The kernel gives an IPv6 route added without a metric 1024 (IPv4: 0); we
# state it explicitly so what we add and what a dump shows compare equal.
_METRIC: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 1024}
_RTN_UNICAST = 1
_RT_SCOPE_UNIVERSE, _RT_SCOPE_LINK = 0, 253
_FR_ACT_TO_TBL = 1
_FIB_RULE_INVERT = 0x2
_UNSET32 = 0xFFFFFFFF  # FRA_SUPPRESS_* "not set"
_IFF_UP, _IFF_RUNNING, _IFF_LOWER_UP = 0x1, 0x40, 0x10000
_PROTO_NAMES = {0: "unspec", 2: "kernel", 3: "boot", 4: "static", 9: "ra", 16: "dhcp"}
# A plan can need a second look (a delete that matched a twin first, a
# replace that left an older route); more than this means something else is
# rewriting our table at the same time.
_PASSES = 5


class RoutingError(Exception):
    """A routing operation failed; the message is one line saying why."""


def check_table(table: int) -> int:
    """The table, if it may be ours; else RoutingError. Same rules as the config."""
    if isinstance(table, bool) or not isinstance(table, int) or not 1 <= table <= 0xFFFFFFFF:
        raise RoutingError(f"routing table must be a number from 1 to 4294967295, not {table!r}")
    if table in (253, 254, 255):
        raise RoutingError(f"routing table must not be {table}: 253, 254 and 255 are the "
                           "kernel's default, main and local tables; use one such as 240")
    if table <= 60:
        raise RoutingError(f"routing table must not be {table}: mwan3 numbers its interface "
                           "tables 1-60; use one outside, such as 240")
    return table


def check_priority(priority: int) -> int:
    """The rule preference, if it may be ours; else RoutingError. Same rules as the config."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RoutingError(f"rule preference must be a number, not {priority!r}")
    if priority in (0, 32766, 32767):
        raise RoutingError(f"rule preference must not be {priority}: 0, 32766 and 32767 are the "
                           "kernel's local, main and default rules; use one such as 90")
    if not 1 <= priority <= 32765:
        raise RoutingError(f"rule preference must be from 1 to 32765, not {priority}")
    if 1001 <= priority <= 3062:
        raise RoutingError(f"rule preference must not be {priority}: mwan3 owns 1001-3062 and "
                           "deletes them when it stops; use one below 1001, such as 90")
    if priority in (10000, 20000):
        raise RoutingError(f"rule preference must not be {priority}: netifd puts its source "
                           "rules there; use one such as 90")
    return priority


@dataclass(frozen=True)
class PathSpec:
    """Where pinned traffic goes: a modem's data device and its next hop.

    ``gateway`` None means a point-to-point device: the route is ``dev X``
    only. ``ipv6`` says the path carries IPv6 (then IPv6 pins are routed
    through it too, via ``gateway6`` or, when that is None, ``dev X``);
    :meth:`Router.path_of` fills all of it from the main table.
    """

    name: str
    device: str
    gateway: str | None
    ipv6: bool = False
    gateway6: str | None = None


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


@dataclass(frozen=True)
class LinkInfo:
    """A device as the kernel sees it.

    ``up`` is IFF_UP and a lower layer that is up (IFF_LOWER_UP, the carrier,
    or IFF_RUNNING for drivers that do not report it): the same test as
    :class:`~remsim_supervisor.adapters.netlink.LinkMonitor`, so the two never disagree.
    """

    name: str
    exists: bool
    up: bool = False
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()  # global scope only: link-local addresses carry no path


# --- what the kernel holds, as plain records ---------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    family: int
    priority: int
    table: int
    dst: str | None
    dst_len: int
    protocol: int | None  # None: the kernel does not report FRA_PROTOCOL (before 4.17)
    # What the rule matches on besides "to DST", as ip writes it: a rule we
    # would add has none. The ones pyroute2 names alike in every version are
    # also kept as rule() keywords, to delete the rule precisely.
    text_parts: tuple[str, ...] = ()
    selectors: tuple[tuple[str, Any], ...] = ()

    @property
    def pin(self) -> str | None:
        """The pinned address, when this is exactly a rule we would add."""
        if self.text_parts or self.dst is None or self.dst_len != _HOST_LEN[self.family]:
            return None
        if self.protocol not in (None, RT_PROTO):
            return None
        return self.dst

    def text(self) -> str:
        words = ["rule"]
        if self.family == socket.AF_INET6 and self.dst is None:
            words.append("-6")
        words.extend(self.text_parts)
        if self.dst is not None:
            full = self.dst_len == _HOST_LEN[self.family]
            words.append(f"to {self.dst}" if full else f"to {self.dst}/{self.dst_len}")
        if len(words) == 1 or words == ["rule", "-6"]:
            words.append("from all")
        words.append(f"lookup {self.table} pref {self.priority}")
        if self.protocol not in (None, RT_PROTO):
            words.append(f"proto {_PROTO_NAMES.get(self.protocol, self.protocol)}")
        return " ".join(words)

    def delete_args(self) -> dict[str, Any]:
        # The kernel deletes the first rule matching every field given, so we
        # give all we know; a rule with our pref/table but a selector we do
        # not decode may still hit a twin first, which the next pass repairs.
        args: dict[str, Any] = {"family": self.family, "priority": self.priority,
                                "table": self.table}
        if self.dst is not None:
            args.update(dst=self.dst, dst_len=self.dst_len)
        if self.protocol is not None:
            args["protocol"] = self.protocol
        args.update(dict(self.selectors))
        return args


def _rule_from(msg: Any) -> _Rule | None:
    family = msg["family"]
    if family not in _FAMILIES:
        return None  # ipmr/ip6mr rules (families 128/129) are never ours
    attr = msg.get_attr
    table = attr("FRA_TABLE")
    selectors: list[tuple[str, Any]] = []
    text: list[str] = []
    if msg["flags"] & _FIB_RULE_INVERT:
        selectors.append(("flags", msg["flags"]))
        text.append("not")
    if attr("FRA_SRC") is not None:
        selectors += [("src", attr("FRA_SRC")), ("src_len", msg["src_len"])]
        full = msg["src_len"] == _HOST_LEN[family]
        text.append(f"from {_canonical(attr('FRA_SRC'))}" + ("" if full else f"/{msg['src_len']}"))
    if msg["tos"]:
        selectors.append(("tos", msg["tos"]))
        text.append(f"tos {msg['tos']:#x}")
    if attr("FRA_FWMARK") is not None:
        selectors.append(("fwmark", attr("FRA_FWMARK")))
        if attr("FRA_FWMASK") is not None:
            selectors.append(("fwmask", attr("FRA_FWMASK")))
        text.append(f"fwmark {attr('FRA_FWMARK'):#x}/{attr('FRA_FWMASK') or _UNSET32:#x}")
    for name, kw, word in (("FRA_IIFNAME", "iifname", "iif"), ("FRA_OIFNAME", "oifname", "oif")):
        if attr(name) is not None:
            selectors.append((kw, attr(name)))
            text.append(f"{word} {attr(name)}")
    # Rarer selectors make the rule "not one we would add" and are shown, but
    # are not sent on delete: a twin may then be hit first, which the next
    # pass of the reconciler repairs.
    for name, word in (("FRA_UID_RANGE", "uidrange"), ("FRA_IP_PROTO", "ipproto"),
                       ("FRA_SPORT_RANGE", "sport"), ("FRA_DPORT_RANGE", "dport"),
                       ("FRA_L3MDEV", "l3mdev"), ("FRA_GOTO", "goto")):
        if attr(name) is not None:
            text.append(f"{word} {attr(name)}")
    for name, word in (("FRA_SUPPRESS_PREFIXLEN", "suppress_prefixlength"),
                       ("FRA_SUPPRESS_IFGROUP", "suppress_ifgroup")):
        value = attr(name)
        if value is not None and value != _UNSET32:
            text.append(f"{word} {value}")
    if msg["action"] != _FR_ACT_TO_TBL:
        text.append(f"action {msg['action']}")
    return _Rule(
        family=family,
        priority=attr("FRA_PRIORITY") or 0,
        table=table if table is not None else msg["table"],
        dst=_canonical(attr("FRA_DST")),
        dst_len=msg["dst_len"],
        protocol=attr("FRA_PROTOCOL"),
        selectors=tuple(selectors),
        text_parts=tuple(text),
    )


@dataclass(frozen=True)
class _Route:
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

    def same(self, other: _Route) -> bool:
        """Equal in everything routing depends on (the device name is a label)."""
        return (self.family, self.table, self.dst, self.dst_len, self.gateway, self.oif,
                self.metric, self.proto, self.scope, self.type, self.tos, self.multipath) == (
            other.family, other.table, other.dst, other.dst_len, other.gateway, other.oif,
            other.metric, other.proto, other.scope, other.type, other.tos, other.multipath)

    def text(self) -> str:
        words = ["route" if self.family == socket.AF_INET else "route -6"]
        if self.type != _RTN_UNICAST:
            words.append(_ROUTE_TYPES.get(self.type, f"type {self.type}"))
        words.append("default" if self.dst_len == 0 else f"{self.dst}/{self.dst_len}")
        if self.multipath:
            words.append("multipath")
        if self.gateway:
            words.append(f"via {self.gateway}")
        if self.oif is not None:
            words.append(f"dev {self.device or f'if{self.oif}'}")
        words.append(f"table {self.table}")
        if self.metric != _METRIC[self.family]:
            words.append(f"metric {self.metric}")
        if self.proto != RT_PROTO:
            words.append(f"proto {_PROTO_NAMES.get(self.proto, self.proto)}")
        return " ".join(words)

    def args(self) -> dict[str, Any]:
        """pyroute2 route() arguments naming exactly this route."""
        family = self.family
        dst = self.dst or ("0.0.0.0" if family == socket.AF_INET else "::")
        args: dict[str, Any] = {
            "family": family, "dst": f"{dst}/{self.dst_len}", "table": self.table,
            "priority": self.metric, "proto": self.proto, "type": self.type,
        }
        if family == socket.AF_INET:
            # IPv6 ignores scope; IPv4 matches it on delete, so say it.
            args["scope"] = self.scope
        if self.tos:
            args["tos"] = self.tos
        if self.oif is not None and not self.multipath:
            args["oif"] = self.oif
        if self.gateway and not self.multipath:
            args["gateway"] = self.gateway
        return args


_ROUTE_TYPES = {2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole",
                7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


def _route_from(msg: Any, names: dict[int, str]) -> _Route:
    attr = msg.get_attr
    table = attr("RTA_TABLE")
    oif = attr("RTA_OIF")
    return _Route(
        family=msg["family"],
        table=table if table is not None else msg["table"],
        dst=_canonical(attr("RTA_DST")),
        dst_len=msg["dst_len"],
        gateway=_canonical(attr("RTA_GATEWAY")),
        oif=oif,
        device=names.get(oif) if oif is not None else None,
        metric=attr("RTA_PRIORITY") or 0,
        proto=msg["proto"],
        scope=msg["scope"],
        type=msg["type"],
        tos=msg["tos"],
        multipath=attr("RTA_MULTIPATH") is not None,
    )


def _canonical(address: str | None) -> str | None:
    return None if address is None else str(ipaddress.ip_address(address))


def _address(text: object, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)  # type: ignore[arg-type]
    except ValueError:
        raise RoutingError(f"{what} is not an IP address: {text!r}") from None


def _difference(before: list[str], after: list[str]) -> tuple[str, ...]:
    """Items of ``before`` not in ``after``, counting duplicates, in order."""
    left = Counter(after)
    out: list[str] = []
    for item in before:
        if left[item]:
            left[item] -= 1
        else:
            out.append(item)
    return tuple(out)


class Router:
    """Reconciles the pin rules and the path route of one table of our own."""

    def __init__(self, table: int = DEFAULT_TABLE, priority: int = DEFAULT_PRIORITY, *,
                 netns: str | None = None, mark: int | None = None) -> None:
        self.table = check_table(table)
        self.priority = check_priority(priority)
        self.netns = netns
        # Packets the supervisor itself sends (heartbeats, its own DNS queries)
        # carry this firewall mark (SO_MARK); one rule per family sends them to
        # our table, whatever their destination.
        if mark is not None and not 0 < mark < 1 << 32:
            raise RoutingError(f"firewall mark must be from 1 to 0xffffffff, not {mark!r}")
        self.mark = mark
        self._ipr: Any = None
        self._lock = threading.RLock()

    # --- the public operations ---------------------------------------------------------------

    def reconcile(self, pins: Iterable[str], path: PathSpec | None,
                  standby: Iterable[PathSpec] = ()) -> Changes:
        """Make the kernel hold exactly one rule per pin and the route of ``path``.

        ``standby`` paths get a default route too, each with a higher metric:
        unbound traffic takes ``path``, while a socket bound to a standby
        path's device (SO_BINDTODEVICE: a failback attempt, ``test-heartbeat
        --via``) finds its own route in the same table.
        """
        wanted = self._wanted_pins(pins)
        standby = [p for p in standby if path is None or p.device != path.device]
        with self._lock:
            before = self._owned_texts()
            for _ in range(_PASSES):
                routes = self._wanted_routes(path)
                for offset, extra in enumerate(standby, 1):
                    routes += self._wanted_routes(extra, offset)
                if not self._step(wanted, routes):
                    break
            else:
                raise RoutingError(f"table {self.table} / pref {self.priority} did not settle "
                                   f"after {_PASSES} passes: is something else changing it?")
            after = self._owned_texts()
        return Changes(added=_difference(after, before), removed=_difference(before, after))

    def owned(self) -> tuple[list[str], list[str]]:
        """Our rules and our routes as they are in the kernel, one line each."""
        with self._lock:
            rules = [rule.text() for rule in self._rules()]
            routes = [route.text() for route in self._routes()]
        return rules, routes

    def clear(self) -> Changes:
        """Remove every rule at our preference and table and every route in our table."""
        with self._lock:
            before = self._owned_texts()
            for _ in range(_PASSES):
                rules, routes = self._rules(), self._routes()
                if not rules and not routes:
                    break
                for rule in rules:
                    self._delete_rule(rule)
                for route in routes:
                    self._delete_route(route)
            else:
                raise RoutingError(f"could not empty table {self.table} / pref {self.priority}")
            after = self._owned_texts()
        return Changes(added=(), removed=_difference(before, after))

    def gateway_of(self, device: str, family: int = socket.AF_INET) -> str | None:
        """The next hop ``device`` has in the main table, as netifd installs it.

        A default route via it wins (lowest metric first), else any route via
        it with a gateway; None when it has none (a point-to-point link) or
        when there is no such device.
        """
        with self._lock:
            index = self._index(device)
            if index is None:
                return None
            best: tuple[int, int, str] | None = None
            for msg in self._call("read the main table", self._socket().get_routes,
                                  family=family, table=_MAIN_TABLE):
                if (msg.get_attr("RTA_TABLE") or msg["table"]) != _MAIN_TABLE:
                    continue
                for oif, gateway in _next_hops(msg):
                    if oif != index or not gateway:
                        continue
                    rank = (0 if msg["dst_len"] == 0 else 1, msg.get_attr("RTA_PRIORITY") or 0,
                            str(_canonical(gateway)))
                    best = rank if best is None or rank < best else best
        return best[2] if best else None

    def path_of(self, name: str, device: str) -> PathSpec:
        """The path through ``device`` as the main table and its addresses describe it."""
        link = self.link_state(device)
        return PathSpec(name=name, device=device, gateway=self.gateway_of(device),
                        ipv6=bool(link.ipv6),
                        gateway6=self.gateway_of(device, socket.AF_INET6) if link.ipv6 else None)

    def link_state(self, device: str) -> LinkInfo:
        """Whether ``device`` exists, is up with carrier, and its addresses."""
        with self._lock:
            ipr = self._socket()
            index = self._index(device)
            if index is None:
                return LinkInfo(name=device, exists=False)
            # ENODEV: it went away since the lookup.
            links = self._call(f"read link {device}", ipr.get_links, index,
                               absent=(errno.ENODEV,)) or []
            if not links:
                return LinkInfo(name=device, exists=False)
            flags = links[0]["flags"]
            up = bool(flags & _IFF_UP) and bool(flags & (_IFF_LOWER_UP | _IFF_RUNNING))
            found: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
            for msg in self._call(f"read addresses of {device}", ipr.get_addr, index=index):
                if msg["index"] != index or msg["family"] not in found:
                    continue
                if msg["family"] == socket.AF_INET6 and msg["scope"] != _RT_SCOPE_UNIVERSE:
                    continue
                address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                if address:
                    found[msg["family"]].append(str(_canonical(address)))
        return LinkInfo(name=device, exists=True, up=up, ipv4=tuple(found[socket.AF_INET]),
                        ipv6=tuple(found[socket.AF_INET6]))

    def close(self) -> None:
        with self._lock:
            if self._ipr is not None:
                ipr, self._ipr = self._ipr, None
                # Closing a broken socket must not hide the error that broke it.
                with contextlib.suppress(Exception):
                    ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- desired state -----------------------------------------------------------------------

    @staticmethod
    def _wanted_pins(pins: Iterable[str]) -> list[tuple[int, str]]:
        if isinstance(pins, str):  # one address, not its characters
            pins = [pins]
        wanted: list[tuple[int, str]] = []
        for pin in pins:
            address = _address(pin, "pin")
            family: int = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if (family, str(address)) not in wanted:
                wanted.append((family, str(address)))
        return wanted

    def _wanted_routes(self, path: PathSpec | None, metric_offset: int = 0) -> list[_Route]:
        if path is None:
            return []
        index = self._index(path.device)
        if index is None:
            raise RoutingError(f"the {path.name} path's device {path.device} does not exist")
        hops = [(socket.AF_INET, path.gateway, 4)]
        if path.ipv6:
            hops.append((socket.AF_INET6, path.gateway6, 6))
        routes = []
        for family, gateway, version in hops:
            if gateway is not None and _address(gateway, f"{path.name} gateway").version != version:
                raise RoutingError(f"the {path.name} path's IPv{version} gateway is "
                                   f"not an IPv{version} address: {gateway!r}")
            routes.append(_Route(
                family=family, table=self.table, dst=None, dst_len=0,
                gateway=_canonical(gateway), oif=index, device=path.device,
                metric=_METRIC[family] + metric_offset, proto=RT_PROTO,
                scope=_RT_SCOPE_UNIVERSE if gateway or family == socket.AF_INET6
                else _RT_SCOPE_LINK,
                type=_RTN_UNICAST))
        return routes

    # --- one pass: compare and apply ---------------------------------------------------------

    def _step(self, pins: list[tuple[int, str]], wanted_routes: list[_Route]) -> bool:
        """Apply one round of differences; False when there was nothing to do."""
        rules, routes = self._rules(), self._routes()
        kept_pins: set[tuple[int, str]] = set()
        kept_marks: set[int] = set()
        stale_rules: list[_Rule] = []
        for rule in rules:
            key = (rule.family, rule.pin or "")
            if rule.pin is not None and key in pins and key not in kept_pins:
                kept_pins.add(key)
            elif self._is_mark_rule(rule) and rule.family not in kept_marks:
                kept_marks.add(rule.family)
            else:
                stale_rules.append(rule)  # a duplicate, a stale pin, or not our shape
        missing_pins = [key for key in pins if key not in kept_pins]
        missing_marks = ([f for f in _FAMILIES if f not in kept_marks]
                         if self.mark is not None else [])
        kept_routes: list[_Route] = []
        missing_routes: list[_Route] = []
        for want in wanted_routes:
            match = next((r for r in routes if r.same(want) and r not in kept_routes), None)
            if match is None:
                missing_routes.append(want)
            else:
                kept_routes.append(match)
        stale_routes = [r for r in routes if r not in kept_routes]
        if not (stale_rules or missing_pins or missing_marks or missing_routes or stale_routes):
            return False
        # Additions before removals, the route before the rules: a replace swaps
        # the path atomically (no instant with an empty table), a new pin's rule
        # finds its route in place, and a pin is never without a rule while a
        # duplicate of it is removed.
        for route in missing_routes:
            self._call(f"put {route.text()}", self._socket().route, "replace", **route.args())
        for family, address in missing_pins:
            rule = _Rule(family, self.priority, self.table, address, _HOST_LEN[family], RT_PROTO)
            self._call(f"add {rule.text()}", self._socket().rule, "add", family=family,
                       dst=address, dst_len=_HOST_LEN[family], table=self.table,
                       priority=self.priority, protocol=RT_PROTO, action="FR_ACT_TO_TBL")
        for family in missing_marks:
            self._call(f"add rule fwmark {self.mark:#x} lookup {self.table}", self._socket().rule,
                       "add", family=family, fwmark=self.mark, fwmask=self.mark,
                       table=self.table, priority=self.priority, protocol=RT_PROTO,
                       action="FR_ACT_TO_TBL")
        if missing_routes:
            return True  # read again: a replace may have displaced a stale route
        for rule in stale_rules:
            self._delete_rule(rule)
        for route in stale_routes:
            self._delete_route(route)
        return True

    def _is_mark_rule(self, rule: _Rule) -> bool:
        if self.mark is None or rule.dst is not None or rule.protocol not in (None, RT_PROTO):
            return False
        return dict(rule.selectors) == {"fwmark": self.mark, "fwmask": self.mark}

    def _delete_rule(self, rule: _Rule) -> None:
        self._call(f"remove {rule.text()}", self._socket().rule, "del",
                   absent=(errno.ENOENT,), **rule.delete_args())

    def _delete_route(self, route: _Route) -> None:
        self._call(f"remove {route.text()}", self._socket().route, "del",
                   absent=(errno.ESRCH, errno.ENOENT), **route.args())

    # --- reading the kernel ------------------------------------------------------------------

    def _rules(self) -> list[_Rule]:
        out = []
        for family in _FAMILIES:
            for msg in self._call("read rules", self._socket().get_rules, family=family):
                rule = _rule_from(msg)
                if rule and rule.priority == self.priority and rule.table == self.table:
                    out.append(rule)
        return out

    def _routes(self) -> list[_Route]:
        names = self._names()
        out = []
        for family in _FAMILIES:
            for msg in self._call(f"read table {self.table}", self._socket().get_routes,
                                  family=family, table=self.table):
                route = _route_from(msg, names)
                # pyroute2 filters by table already; checking again keeps a
                # version that does not from making us delete another table.
                if route.table == self.table and route.family == family:
                    out.append(route)
        return out

    def _owned_texts(self) -> list[str]:
        return [r.text() for r in self._rules()] + [r.text() for r in self._routes()]

    def _names(self) -> dict[int, str]:
        return {msg["index"]: msg.get_attr("IFLA_IFNAME")
                for msg in self._call("read links", self._socket().get_links)}

    def _index(self, device: str) -> int | None:
        indexes = self._call(f"look up {device}", self._socket().link_lookup, ifname=device)
        return indexes[0] if indexes else None

    # --- the socket and its errors -----------------------------------------------------------

    def _socket(self) -> Any:
        aio = sys.modules.get("asyncio")
        if aio is not None:
            try:
                aio.get_running_loop()
            except RuntimeError:
                pass
            else:
                raise RoutingError("Router must run in a worker thread (asyncio.to_thread): "
                                   "pyroute2 0.9 cannot be called inside a running event loop")
        if self._ipr is None:
            try:
                from pyroute2 import IPRoute, NetNS
            except ImportError:
                raise RoutingError("pyroute2 is not installed: opkg install python3-pyroute2"
                                   ) from None
            try:
                if self.netns is None:
                    self._ipr = IPRoute()
                else:
                    if not any(os.path.exists(os.path.join(d, self.netns))
                               for d in ("/run/netns", "/var/run/netns")):
                        raise RoutingError(f"no network namespace {self.netns!r}")
                    # flags=0: pyroute2 would otherwise create a missing namespace.
                    self._ipr = NetNS(self.netns, flags=0)
            except PermissionError:
                raise RoutingError("cannot open a netlink socket: run as root") from None
            except OSError as exc:
                raise RoutingError(f"cannot open a netlink socket: {exc.strerror or exc}"
                                   ) from None
        return self._ipr

    def _call(self, what: str, func: Any, *args: Any, absent: tuple[int, ...] = (),
              **kwargs: Any) -> Any:
        """Run one netlink request, turning its failure into a one-line RoutingError.

        Dumps are drained here, inside the error handling; a code in
        ``absent`` means "already gone" and is not an error.
        """
        from pyroute2 import NetlinkError
        try:
            result = func(*args, **kwargs)
            # 0.7.9 answers dumps with generators, 0.9 with its own iterables;
            # a single message is a dict. Drain here, where errors are caught.
            if hasattr(result, "__iter__") and not isinstance(result, (str, bytes, dict)):
                return list(result)
            return result
        except NetlinkError as exc:
            if exc.code in absent:
                return None
            raise RoutingError(_explain(what, exc.code)) from None
        except OSError as exc:
            self.close()  # the socket may be unusable; the next call opens a new one
            raise RoutingError(_explain(what, exc.errno or 0)) from None


def _explain(what: str, code: int) -> str:
    if code in (errno.EPERM, errno.EACCES):
        return f"cannot {what}: not permitted (run as root)"
    return f"cannot {what}: {os.strerror(code) if code else 'netlink error'}"


def _next_hops(msg: Any) -> list[tuple[int | None, str | None]]:
    """(oif, gateway) of a route, one per next hop of a multipath route."""
    multipath = msg.get_attr("RTA_MULTIPATH")
    if not multipath:
        return [(msg.get_attr("RTA_OIF"), msg.get_attr("RTA_GATEWAY"))]
    return [(hop["oif"], hop.get_attr("RTA_GATEWAY")) for hop in multipath]


__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_TABLE",
    "RT_PROTO",
    "Changes",
    "LinkInfo",
    "PathSpec",
    "Router",
    "RoutingError",
    "check_priority",
    "check_table",
]
