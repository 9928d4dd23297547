"""The heartbeat path in the kernel: policy rules to pinned hosts, one table of our own.

Every pinned address (IonMesh, remsim-server, bankd, extra ``pin`` entries)
gets one rule ``to ADDR/32 lookup TABLE pref PRIORITY`` (``/128`` for IPv6),
and TABLE holds one default route through the active path: ``via GATEWAY dev
DEVICE`` (``dev DEVICE`` alone on point-to-point links), one for each IP
version the path carries (IPv4, IPv6 or both). Moving the path rewrites
those routes; the rules never change for it. With no path the table is left empty, so pinned
traffic falls through our rule to the main table (see docs/routing.md).

:class:`Router` is the executor of that reconciliation: it reads what the
kernel holds through pyroute2, asks :func:`remsim_supervisor.core.routes.diff`
for the operations that make it agree with the desired state, applies them,
and reads again until nothing is left to do (which rules and routes are ours,
and the order that keeps pinned traffic routed throughout, are told there).
We tag what we add with :data:`RT_PROTO` (``FRA_PROTOCOL`` on rules needs
Linux 4.17), but the preference/table pair is what identifies a rule, on
every kernel. Running it twice changes nothing. :class:`Changes` reports
what was added and removed, in the words of ``ip``.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

from remsim_supervisor.adapters.routing_msgs import (
    canonical,
    next_hops,
    route_args,
    route_from,
    rule_args,
    rule_from,
)
from remsim_supervisor.core.routes import (
    FAMILIES,
    RT_PROTO,
    Changes,
    Desired,
    Operation,
    Route,
    Rule,
    changes,
    default_route,
    diff,
    owned_routes,
    owned_rules,
    reserved_priority,
    reserved_table,
)

DEFAULT_TABLE = 240
DEFAULT_PRIORITY = 90

_MAIN_TABLE = 254
_RT_SCOPE_UNIVERSE = 0
_IFF_UP, _IFF_RUNNING, _IFF_LOWER_UP = 0x1, 0x40, 0x10000
_IFA_F_UNUSABLE = 0x08 | 0x40  # IFA_F_DADFAILED, IFA_F_TENTATIVE
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
    reason = reserved_table(table)
    if reason is not None:
        raise RoutingError(f"routing table must not be {table}: {reason}")
    return table


def check_priority(priority: int) -> int:
    """The rule preference, if it may be ours; else RoutingError. Same rules as the config."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RoutingError(f"rule preference must be a number, not {priority!r}")
    reason = reserved_priority(priority)
    if reason is not None:
        raise RoutingError(f"rule preference must not be {priority}: {reason}")
    if not 1 <= priority <= 32765:
        raise RoutingError(f"rule preference must be from 1 to 32765, not {priority}")
    return priority


@dataclass(frozen=True)
class PathSpec:
    """Where pinned traffic goes: a modem's data device and its next hop.

    ``gateway`` None means a point-to-point device: the route is ``dev X``
    only. ``ipv6`` says the path carries IPv6 (then IPv6 pins are routed
    through it too, via ``gateway6`` or, when that is None, ``dev X``);
    ``ipv4`` False says it carries no IPv4 (an IPv6-only modem: no IPv4
    route through it, so IPv4 pins take a standby path or the main table).
    :meth:`Router.path_of` fills all of it from the main table.
    """

    name: str
    device: str
    gateway: str | None
    ipv6: bool = False
    gateway6: str | None = None
    ipv4: bool = True

    @property
    def versions(self) -> tuple[int, ...]:
        """The IP versions the path carries: (4,), (6,) or (4, 6)."""
        return tuple(v for v, on in ((4, self.ipv4), (6, self.ipv6)) if on)


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
    # Global scope only (link-local addresses carry no path), and not while
    # tentative (duplicate address detection under way) or after DAD failed.
    ipv6: tuple[str, ...] = ()


def _address(text: object, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)  # type: ignore[arg-type]
    except ValueError:
        raise RoutingError(f"{what} is not an IP address: {text!r}") from None


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
        self._owner: threading.Thread | None = None  # the thread that opened _ipr
        self._lock = threading.RLock()

    # --- the public operations ---------------------------------------------------------------

    def reconcile(self, pins: Iterable[str], path: PathSpec | None,
                  standby: Iterable[PathSpec] = (),
                  current: Callable[[], bool] | None = None) -> Changes:
        """Make the kernel hold exactly one rule per pin and the route of ``path``.

        ``standby`` paths get a default route too, each with a higher metric:
        unbound traffic takes ``path``, while a socket bound to a standby
        path's device (SO_BINDTODEVICE: a failback attempt, ``test-heartbeat
        --via``) finds its own route in the same table. ``current``, asked
        before each change, says whether ``path`` is still the one wanted: once
        it says no (the path moved meanwhile), nothing more is changed.
        """
        wanted = self._wanted_pins(pins)
        standby = [p for p in standby if path is None or p.device != path.device]
        with self._lock:
            before = self._owned_texts()
            for _ in range(_PASSES):
                # Device indexes are looked up again each pass: a device may be re-created.
                routes = self._wanted_routes(path)
                for offset, extra in enumerate(standby, 1):
                    routes += self._wanted_routes(extra, offset)
                desired = Desired(self.table, self.priority, tuple(wanted), tuple(routes),
                                  self.mark)
                if not self._apply(diff(desired, self._rules(), self._routes()), current):
                    break
            else:
                raise RoutingError(f"table {self.table} / pref {self.priority} did not settle "
                                   f"after {_PASSES} passes: is something else changing it?")
            after = self._owned_texts()
        return changes(before, after)

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
            nothing = Desired(self.table, self.priority)
            for _ in range(_PASSES):
                if not self._apply(diff(nothing, self._rules(), self._routes())):
                    break
            else:
                raise RoutingError(f"could not empty table {self.table} / pref {self.priority}")
            after = self._owned_texts()
        return Changes(removed=changes(before, after).removed)

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
                for oif, gateway in next_hops(msg):
                    if oif != index or not gateway:
                        continue
                    rank = (0 if msg["dst_len"] == 0 else 1, msg.get_attr("RTA_PRIORITY") or 0,
                            str(canonical(gateway)))
                    best = rank if best is None or rank < best else best
        return best[2] if best else None

    def path_of(self, name: str, device: str) -> PathSpec:
        """The path through ``device`` as the main table and its addresses describe it."""
        link = self.link_state(device)
        # An IPv6-only device has no IPv4 path; a device with no address yet is
        # described as IPv4 (point to point) as before.
        ipv4 = bool(link.ipv4) or not link.ipv6
        return PathSpec(name=name, device=device,
                        gateway=self.gateway_of(device) if ipv4 else None,
                        ipv6=bool(link.ipv6),
                        gateway6=self.gateway_of(device, socket.AF_INET6) if link.ipv6 else None,
                        ipv4=ipv4)

    def routes_of(self, path: PathSpec) -> list[Route]:
        """The default routes :meth:`reconcile` puts in our table for ``path`` as the
        active path (device index looked up now): what a move to it writes first."""
        with self._lock:
            return self._wanted_routes(path)

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
                if msg["family"] == socket.AF_INET6 and (
                        msg["scope"] != _RT_SCOPE_UNIVERSE
                        or (msg.get_attr("IFA_FLAGS") or msg["flags"]) & _IFA_F_UNUSABLE):
                    continue
                address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                if address:
                    found[msg["family"]].append(str(canonical(address)))
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

    def _wanted_routes(self, path: PathSpec | None, metric_offset: int = 0) -> list[Route]:
        if path is None:
            return []
        index = self._index(path.device)
        if index is None:
            raise RoutingError(f"the {path.name} path's device {path.device} does not exist")
        hops = [(socket.AF_INET, path.gateway, 4)] if path.ipv4 else []
        if path.ipv6:
            hops.append((socket.AF_INET6, path.gateway6, 6))
        routes = []
        for family, gateway, version in hops:
            if gateway is not None and _address(gateway, f"{path.name} gateway").version != version:
                raise RoutingError(f"the {path.name} path's IPv{version} gateway is "
                                   f"not an IPv{version} address: {gateway!r}")
            routes.append(default_route(family, self.table, canonical(gateway), index,
                                        path.device, metric_offset))
        return routes

    # --- applying operations -----------------------------------------------------------------

    def _apply(self, operations: list[Operation],
               current: Callable[[], bool] | None = None) -> bool:
        """Carry out one round of operations; False when there were none (or when
        ``current`` says the state they came from is no longer wanted)."""
        for op in operations:
            if current is not None and not current():
                return False
            item = op.item
            if isinstance(item, Route):
                if op.action == "put":
                    self._call(op.text(), self._socket().route, "replace", **route_args(item))
                else:
                    self._call(op.text(), self._socket().route, "del",
                               absent=(errno.ESRCH, errno.ENOENT), **route_args(item))
            elif op.action == "add":
                self._call(op.text(), self._socket().rule, "add", action="FR_ACT_TO_TBL",
                           **rule_args(item))
            else:
                self._call(op.text(), self._socket().rule, "del", absent=(errno.ENOENT,),
                           **rule_args(item))
        return bool(operations)

    # --- reading the kernel ------------------------------------------------------------------

    def _rules(self) -> list[Rule]:
        out = []
        for family in FAMILIES:
            for msg in self._call("read rules", self._socket().get_rules, family=family):
                rule = rule_from(msg)
                if rule is not None:
                    out.append(rule)
        return owned_rules(out, self.table, self.priority)

    def _routes(self) -> list[Route]:
        names = self._names()
        out = []
        for family in FAMILIES:
            for msg in self._call(f"read table {self.table}", self._socket().get_routes,
                                  family=family, table=self.table):
                route = route_from(msg, names)
                # pyroute2 filters by table already; checking again keeps a
                # version that does not from making us delete another table.
                if route.family == family:
                    out.append(route)
        return owned_routes(out, self.table)

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
        if self._ipr is not None and self._owner is not threading.current_thread():
            # pyroute2 0.9 ties its socket to the thread that opened it: used from
            # another thread it opens one more and never closes it (a descriptor per
            # worker thread, thousands a day) and it grows (~70 kB a heartbeat). A
            # socket per worker thread costs ~5 ms a heartbeat (docs/PERFORMANCE.md).
            self.close()
        if self._ipr is None:
            self._owner = threading.current_thread()
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
