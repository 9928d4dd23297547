"""The LAN failover policy in the kernel: its tables, its rules, and what it reads.

The router's default route for the LAN is not netifd's to lose: netifd keeps
the main table (a default route per WAN, by metric), and the policy steers
around it with rules of its own, so neither rewrites the other's routes.
With ``lan.priority`` P (95) and ``lan.table`` T (241):

* ``pref P fwmark M_N/M_N lookup T+N``, one per uplink N, and in table T+N a
  default route through uplink N: its probes (SO_MARK M_N) leave through it
  whichever uplink carries the LAN, so the primary is tested while the
  traffic stays on the backup. Held by one
  :class:`~remsim_supervisor.adapters.routing.Router` per uplink;
* ``pref P+1 lookup main suppress_prefixlength 0``: every route of the main
  table but its default ones (the LAN, the uplinks' own subnets, anything
  netifd or the owner added) keeps applying;
* ``pref P+2 lookup T``: the default route through the chosen uplink. An
  empty T (no usable uplink) falls through to the main table's default
  route: the policy then changes nothing.

The heartbeat path's own rules (``routing.priority``, 90) come before all of
these and always win. Everything is tagged with protocol 253 and removed by
:meth:`LanKernel.clear` (an orderly stop, or mwan3 found running).

Also here: the byte counters of a device (``/sys/class/net/DEV/statistics``)
for a daily cap, and :func:`mwan3_reason`: whether mwan3 runs (its
configuration with an enabled interface, its processes, or its fwmark rules),
in which case the LAN is left to it.

Synchronous, for a worker thread, like the routing executor it reuses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from typing import Any

from remsim_supervisor.adapters.routing import LinkInfo, PathSpec, Router, RoutingError
from remsim_supervisor.adapters.routing_msgs import canonical, next_hops, route_args
from remsim_supervisor.core.routes import RT_PROTO

MAIN_TABLE = 254
MWAN3_CONFIG = "/etc/config/mwan3"
MWAN3_PROCESSES = ("mwan3track", "mwan3rtmon")
MWAN3_MARK_MASK = 0x3F00
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000  # the link monitor's test of "up"


class LanKernel:
    """Reconciles the LAN policy's rules and tables (see the module's text)."""

    def __init__(self, table: int, priority: int, probe_mark: int, uplinks: int, *,
                 netns: str | None = None, sys_root: str = "/sys") -> None:
        self.table = table
        self.priority = priority
        self.netns = netns
        self.sys_root = sys_root
        # The LAN's table holds no rule at (priority, table): the Router owns its route only.
        self.lan = Router(table, priority, netns=netns)
        self.probes = [Router(table + n, priority, netns=netns, mark=probe_mark << (n - 1))
                       for n in range(1, uplinks + 1)]
        self._lock = threading.Lock()  # the LAN's route and rules
        self._probe_lock = threading.Lock()  # the probe tables

    def mark(self, n: int) -> int:
        """The firewall mark of uplink N's probes (1-based)."""
        mark = self.probes[n - 1].mark
        assert mark is not None
        return mark

    def apply(self, active: PathSpec | None) -> None:
        """Make the kernel hold the LAN's route via ``active`` (None: none) and its rules."""
        # The LAN Router's own lock too: its netlink socket serves one request at a time.
        with self._lock, self.lan._lock:
            if active is not None:
                # One netlink request puts the route in at once; the reconcile
                # that follows finds it in place and removes what is stale.
                for route in self.lan._wanted_routes(active):
                    self.lan._call("replace the LAN's route", self.lan._socket().route,
                                   "replace", **route_args(route))
            self.lan.reconcile((), active)
            self._rules(present=True)

    def apply_probes(self, paths: list[PathSpec | None]) -> list[str]:
        """Give each uplink's probe table its route (None: empty it, and no mark rule).

        Its own lock: a move of the LAN's route never waits for these. Returns
        a line per uplink whose table could not be set (its device vanished
        meanwhile, say).
        """
        problems: list[str] = []
        with self._probe_lock:
            for router, path in zip(self.probes, paths):
                try:
                    if path is None:
                        router.clear()
                    else:
                        router.reconcile((), path)
                except RoutingError as exc:
                    problems.append(str(exc))
                    with contextlib.suppress(RoutingError):
                        router.clear()
        return problems

    def clear(self) -> None:
        """Remove every rule and route of the policy."""
        with self._lock, self._probe_lock, self.lan._lock:
            self._rules(present=False)
            self.lan.clear()
            for router in self.probes:
                router.clear()

    def read(self, devices: list[str]) -> dict[str, tuple[LinkInfo, str | None]]:
        """Each device as the kernel sees it (link, carrier, IPv4 addresses) and its next
        hop in the main table (a default route's first, lowest metric first; None on
        a point-to-point link): three dumps in all, whatever the number of uplinks."""
        wanted = set(devices)
        with self.lan._lock:
            ipr = self.lan._socket()
            index: dict[int, str] = {}
            up: dict[str, bool] = {}
            for msg in self.lan._call("read links", ipr.get_links):
                name = msg.get_attr("IFLA_IFNAME")
                if name in wanted:
                    flags = msg["flags"]
                    index[msg["index"]] = name
                    up[name] = bool(flags & IFF_UP) and bool(flags & (IFF_LOWER_UP | IFF_RUNNING))
            addresses: dict[str, list[str]] = {name: [] for name in up}
            for msg in self.lan._call("read addresses", ipr.get_addr, family=socket.AF_INET):
                name = index.get(msg["index"])
                address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
                if name is not None and address:
                    addresses[name].append(str(canonical(address)))
            best: dict[str, tuple[int, int, str]] = {}
            for msg in self.lan._call("read the main table", ipr.get_routes,
                                      family=socket.AF_INET, table=MAIN_TABLE):
                if (msg.get_attr("RTA_TABLE") or msg["table"]) != MAIN_TABLE:
                    continue
                for oif, gateway in next_hops(msg):
                    name = index.get(oif) if oif is not None else None
                    if name is None or not gateway:
                        continue
                    rank = (0 if msg["dst_len"] == 0 else 1, msg.get_attr("RTA_PRIORITY") or 0,
                            str(canonical(gateway)))
                    if name not in best or rank < best[name]:
                        best[name] = rank
        out: dict[str, tuple[LinkInfo, str | None]] = {}
        for device in devices:
            if device not in up:
                out[device] = (LinkInfo(device, False), None)
            else:
                out[device] = (LinkInfo(device, True, up[device], tuple(addresses[device])),
                               best[device][2] if device in best else None)
        return out

    def close(self) -> None:
        self.lan.close()
        for router in self.probes:
            router.close()

    # -- the two rules around the main table ---------------------------------------------

    def _wanted(self) -> dict[int, dict[str, Any]]:
        return {
            self.priority + 1: {"table": MAIN_TABLE, "FRA_SUPPRESS_PREFIXLEN": 0},
            self.priority + 2: {"table": self.table},
        }

    def _found(self) -> dict[int, list[bool]]:
        """Per preference of ours: for each rule there, whether it is exactly the wanted one."""
        wanted = self._wanted()
        ipr = self.lan._socket()
        found: dict[int, list[bool]] = {}
        for msg in self.lan._call("read rules", ipr.get_rules, family=socket.AF_INET):
            pref = msg.get_attr("FRA_PRIORITY")
            if pref not in wanted:
                continue
            table = msg.get_attr("FRA_TABLE") or msg["table"]
            suppress = msg.get_attr("FRA_SUPPRESS_PREFIXLEN")
            extra = [name for name, _ in msg["attrs"] if name not in (
                "FRA_TABLE", "FRA_PRIORITY", "FRA_PROTOCOL", "FRA_SUPPRESS_PREFIXLEN")]
            exact = (table == wanted[pref]["table"] and not extra and msg["src_len"] == 0
                     and msg["dst_len"] == 0
                     and (suppress == 0) == ("FRA_SUPPRESS_PREFIXLEN" in wanted[pref]))
            # Only a rule in our table (or main's, at our preference) can be ours to fix.
            if table == wanted[pref]["table"]:
                found.setdefault(pref, []).append(exact)
        return found

    def _rules(self, present: bool) -> None:
        ipr = self.lan._socket()
        for pref, args in self._wanted().items():
            found = self._found().get(pref, [])
            if present and found == [True]:
                continue
            # Remove what sits at our preference in our table (a crash's leftovers
            # included), then add the one rule wanted.
            for _ in found:
                self.lan._call(f"delete rule pref {pref}", ipr.rule, "del",
                               absent=(errno.ENOENT,), family=socket.AF_INET,
                               priority=pref, table=args["table"])
            if present:
                self.lan._call(f"add rule pref {pref}", ipr.rule, "add",
                               family=socket.AF_INET, priority=pref, protocol=RT_PROTO,
                               action="FR_ACT_TO_TBL", **args)

    # -- byte counters ---------------------------------------------------------------------

    def counter(self, device: str) -> int | None:
        """Bytes the device received and sent since it was created; None without it."""
        base = os.path.join(self.sys_root, "class", "net", device, "statistics")
        total = 0
        for name in ("rx_bytes", "tx_bytes"):
            try:
                with open(os.path.join(base, name)) as f:
                    total += int(f.read().strip() or 0)
            except (OSError, ValueError):
                return None
        return total

    def mwan3_rules(self) -> list[str]:
        """mwan3's own fwmark rules (preferences 2001-2254, mask within 0x3f00), one line each."""
        found = []
        with self.lan._lock:
            messages = [msg for family in (socket.AF_INET, socket.AF_INET6)
                        for msg in self.lan._call("read rules", self.lan._socket().get_rules,
                                                  family=family)]
        for msg in messages:
            pref = msg.get_attr("FRA_PRIORITY") or 0
            mask = msg.get_attr("FRA_FWMASK")
            if 2001 <= pref <= 2254 and mask and not mask & ~MWAN3_MARK_MASK:
                found.append(f"{pref}: fwmark {msg.get_attr('FRA_FWMARK'):#x}/{mask:#x}")
        return found


def mwan3_reason(config_path: str = MWAN3_CONFIG, proc: str = "/proc",
                 rules: list[str] | None = None) -> str | None:
    """Why mwan3 is taken to run here (one line), or None when it is not."""
    enabled = _mwan3_enabled(config_path)
    if enabled:
        return f"{config_path} enables {', '.join(enabled)}"
    running = _processes(proc, MWAN3_PROCESSES)
    if running:
        return f"{', '.join(running)} running"
    if rules:
        return f"mwan3's rules in place ({rules[0]})"
    return None


def _mwan3_enabled(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    from remsim_supervisor.config import uci

    sections, _problems = uci.parse(text)
    names = []
    for section in sections:
        option = section.options.get("enabled")
        if section.type == "interface" and option is not None and option.values \
                and option.values[-1].strip() in ("1", "on", "true", "yes", "enabled"):
            names.append(section.name or f"@interface[{section.index}]")
    return names


def _processes(proc: str, names: tuple[str, ...]) -> list[str]:
    found: set[str] = set()
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        # mwan3track and mwan3rtmon are shell scripts: their name is an argument of sh.
        for arg in argv[:3]:
            base = os.path.basename(arg.decode(errors="replace"))
            if base in names:
                found.add(base)
    return sorted(found)


__all__ = ["MWAN3_CONFIG", "LanKernel", "mwan3_reason"]
