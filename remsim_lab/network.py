"""The lab's network: a router and a cloud, two carriers between them.

Two network namespaces joined by one veth pair per modem:

    router ns                              cloud ns
    wwan0 10.251.1.2/24  <-- primary -->  pgw 10.251.1.1/24
    wwan1 10.251.2.2/24  <--   iot   -->  igw 10.251.2.1/24
                                           lo: 10.251.9.9  (IonMesh)
                                               10.251.9.10 (anything else)
                                               10.251.9.20 (remsim-server)
                                               10.251.9.30 (bankd)

The router's main table has a default route through each modem, the
primary's first (metric 10, then 20), as netifd installs them; and an
mwan3-style rule at preference 1001 that the supervisor must never touch.
Faults: a carrier can lose its link (the cloud side goes down: no carrier on
the router's device), turn into a silent blackhole (link up, everything
arriving from the router dropped, by an nftables rule in the cloud), or
forget idle flows as carriers' NAT and firewalls do (the cloud's conntrack
forgets an established TCP flow idle for a few seconds, does not pick a
flow up again mid-stream, and drops what arrives on a forgotten one).

With ``ipv6=True`` every carrier also carries IPv6, as a cellular bearer
does: the router's device has a global address from a documentation prefix
(``2001:db8:1::2/64`` primary, ``2001:db8:2::2/64`` IoT), the cloud's side
answers on the link-local gateway ``fe80::1``, and the router's main table
has an IPv6 default route through each modem via ``fe80::1`` (the IoT one as
a router advertisement leaves it: ``proto ra``, with an expiry); IonMesh
and the rest also answer at ``2001:db8:9::9`` and ``2001:db8:9::10`` on the
cloud's loopback. ``ipv6_only`` names carriers that carry no IPv4 at all
(no address, no IPv4 route). Duplicate address detection is off in both
namespaces (and every address is ``nodad``): a fresh address is usable at
once instead of "tentative" for a second. A carrier side that goes down keeps
its global IPv6 address (``keep_addr_on_down``), as IPv4 ones are kept, and
gets its ``fe80::1`` back when it comes up.

Every address is inside the two namespaces; :meth:`close` deletes them, and
with them every interface and rule.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def call_in_netns(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on a fresh thread that entered network namespace ``ns``.

    Sockets created there stay in ``ns`` whichever thread later uses them, so
    a server built this way (the fake IonMesh) serves inside the namespace
    from this process.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            finally:
                os.close(fd)
            result.append(fn(*args, **kwargs))
        except BaseException as exc:  # handed back to the caller
            error.append(exc)

    thread = threading.Thread(target=run, name=f"in {ns}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


IONMESH = "10.251.9.9"
ELSEWHERE = "10.251.9.10"
REMSIM_SERVER = "10.251.9.20"
BANKD = "10.251.9.30"
IONMESH6 = "2001:db8:9::9"
ELSEWHERE6 = "2001:db8:9::10"
GATEWAY6 = "fe80::1"  # every carrier's IPv6 next hop, link-local as on a cellular bearer


@dataclass(frozen=True)
class Carrier:
    role: str
    device: str  # in the router
    address: str  # the router's address on it
    peer: str  # the cloud's device
    gateway: str
    metric: int
    address6: str = ""  # the router's global IPv6 address on it (with ipv6=True)
    subnet6: str = ""  # the cloud's own address on the carrier's /64


CARRIERS = (
    Carrier("primary", "wwan0", "10.251.1.2", "pgw", "10.251.1.1", 10,
            "2001:db8:1::2", "2001:db8:1::1"),
    Carrier("iot", "wwan1", "10.251.2.2", "igw", "10.251.2.1", 20,
            "2001:db8:2::2", "2001:db8:2::1"),
)
MWAN3_RULE = ("pref", "1001", "iif", "wwan0", "lookup", "1")


def _run(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


class LabNetwork:
    def __init__(self, prefix: str = "rslab", *, ipv6: bool = False,
                 ipv6_only: Collection[str] = ()) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:5]}"
        self.router = f"{prefix}-r-{tag}"
        self.cloud = f"{prefix}-c-{tag}"
        self.carriers = {c.role: c for c in CARRIERS}
        unknown = set(ipv6_only) - set(self.carriers)
        if unknown:
            raise ValueError(f"no carrier {sorted(unknown)}: the carriers are "
                             f"{sorted(self.carriers)}")
        self.ipv6 = ipv6 or bool(ipv6_only)
        self.ipv6_only = frozenset(ipv6_only)
        self._made: list[str] = []

    def __enter__(self) -> LabNetwork:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ip(self, ns: str, *args: str, check: bool = True) -> str:
        return _run("ip", "-n", ns, *args, check=check)

    def up(self) -> None:
        try:
            for ns in (self.router, self.cloud):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                self.ip(ns, "link", "set", "lo", "up")
                if self.ipv6:
                    # keep_addr_on_down: a carrier whose side goes down keeps its
                    # gateway address, as a real one does (IPv6 would drop it).
                    _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                         "net.ipv6.conf.all.accept_dad=0",
                         "net.ipv6.conf.default.accept_dad=0",
                         "net.ipv6.conf.all.keep_addr_on_down=1",
                         "net.ipv6.conf.default.keep_addr_on_down=1")
            for c in CARRIERS:
                _run(
                    "ip",
                    "link",
                    "add",
                    c.device,
                    "netns",
                    self.router,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    c.peer,
                    "netns",
                    self.cloud,
                )
                self.ip(self.router, "link", "set", c.device, "up")
                self.ip(self.cloud, "link", "set", c.peer, "up")
                if self.ipv6:
                    self._carry_ipv6(c)
                if c.role in self.ipv6_only:
                    continue
                self.ip(self.router, "addr", "add", f"{c.address}/24", "dev", c.device)
                self.ip(self.cloud, "addr", "add", f"{c.gateway}/24", "dev", c.peer)
                self.ip(
                    self.router,
                    "route",
                    "add",
                    "default",
                    "via",
                    c.gateway,
                    "dev",
                    c.device,
                    "metric",
                    str(c.metric),
                )
            for address in (IONMESH, ELSEWHERE, REMSIM_SERVER, BANKD):
                self.ip(self.cloud, "addr", "add", f"{address}/32", "dev", "lo")
            if self.ipv6:
                for address in (IONMESH6, ELSEWHERE6):
                    self.ip(self.cloud, "-6", "addr", "add", f"{address}/128", "dev", "lo",
                            "nodad")
            self.ip(self.router, "rule", "add", *MWAN3_RULE)
        except BaseException:
            self.close()
            raise

    def _carry_ipv6(self, c: Carrier) -> None:
        """The carrier's IPv6: a global address each side, ``fe80::1`` in the cloud,
        and the router's default route via it (the IoT one as an RA leaves it)."""
        self.ip(self.router, "-6", "addr", "add", f"{c.address6}/64", "dev", c.device, "nodad")
        self.ip(self.cloud, "-6", "addr", "add", f"{c.subnet6}/64", "dev", c.peer, "nodad")
        self.ip(self.cloud, "-6", "addr", "add", f"{GATEWAY6}/64", "dev", c.peer, "nodad")
        learned = ("proto", "ra", "expires", "3600") if c.role == "iot" else ()
        self.ip(self.router, "-6", "route", "add", "default", "via", GATEWAY6, "dev", c.device,
                "metric", str(c.metric), *learned)

    def close(self) -> None:
        for ns in reversed(self._made):
            _run("ip", "netns", "del", ns, check=False)
        self._made.clear()

    # -- faults ----------------------------------------------------------------------

    def link(self, role: str, up: bool) -> None:
        """The carrier's side goes down (or up): the router's device loses carrier."""
        peer = self.carriers[role].peer
        self.ip(self.cloud, "link", "set", peer, "up" if up else "down")
        if up and self.ipv6:
            # A device going down loses its link-local addresses: the gateway's
            # fe80::1 comes back with the carrier, as a real one's does.
            self.ip(self.cloud, "-6", "addr", "replace", f"{GATEWAY6}/64", "dev", peer, "nodad")

    def blackhole(self, role: str, on: bool) -> None:
        """Everything the router sends over this carrier silently vanishes (link stays up)."""
        table = f"blackhole_{role}"
        if on:
            peer = self.carriers[role].peer
            script = (
                f"table inet {table} {{\n chain prerouting {{\n"
                f"  type filter hook prerouting priority -300;\n"
                f'  iifname "{peer}" drop\n }}\n}}\n'
            )
            subprocess.run(
                ["ip", "netns", "exec", self.cloud, "nft", "-f", "-"],
                input=script,
                text=True,
                check=True,
                capture_output=True,
            )
        else:
            _run(
                "ip",
                "netns",
                "exec",
                self.cloud,
                "nft",
                "delete",
                "table",
                "inet",
                table,
                check=False,
            )

    def forget_idle_flows(self, role: str, after_s: int | None) -> None:
        """The carrier forgets TCP flows idle for ``after_s`` seconds (None: it stops).

        The cloud's own conntrack (``nf_conntrack_tcp_timeout_established``,
        ``nf_conntrack_tcp_loose=0``, both of the cloud namespace only) and a
        ``ct state invalid drop`` on what arrives over this carrier: a packet of
        a forgotten flow silently vanishes, a new connection goes through.
        """
        table = f"forget_{role}"
        nft = ["ip", "netns", "exec", self.cloud, "nft"]
        if after_s is None:
            _run(*nft, "delete", "table", "inet", table, check=False)
            return
        peer = self.carriers[role].peer
        script = (
            f"table inet {table} {{\n chain prerouting {{\n"
            f"  type filter hook prerouting priority 0;\n"
            f'  iifname "{peer}" ct state invalid drop\n }}\n}}\n'
        )
        # The table first: its ct rule loads conntrack, whose settings then exist.
        subprocess.run([*nft, "-f", "-"], input=script, text=True, check=True,
                       capture_output=True)
        _run("ip", "netns", "exec", self.cloud, "sysctl", "-q", "-w",
             f"net.netfilter.nf_conntrack_tcp_timeout_established={int(after_s)}",
             "net.netfilter.nf_conntrack_tcp_loose=0")

    # -- looking ----------------------------------------------------------------------

    def route_get(self, address: str) -> str:
        return self.ip(self.router, "route", "get", address).splitlines()[0]

    def rules(self) -> list[str]:
        return [
            line
            for line in (
                self.ip(self.router, "-4", "rule") + self.ip(self.router, "-6", "rule")
            ).splitlines()
            if line
        ]

    def table(self, table: int) -> list[str]:
        lines = []
        for family in ("-4", "-6"):
            out = self.ip(self.router, family, "route", "show", "table", str(table), check=False)
            lines += [line for line in out.splitlines() if line]
        return lines
