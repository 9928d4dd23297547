"""Conntrack cut-over: deleting the tracked connections to 1, 100 and 500 pinned hosts.

A router namespace of its own with conntrack on (an nftables ``ct`` rule
loads it), one tracked UDP flow to each pinned address plus ``--background``
flows to other addresses (a router is never empty), then the supervisor's
own :func:`remsim_supervisor.adapters.conntrack.flush_conntrack` with every pinned
address, as the heartbeat task calls it when the path moves, timed wall
clock. The entries are created again before each trial.

The limit, in the same run and the same namespace: one unfiltered ctnetlink
dump of the whole table and one delete per matching entry over one socket,
stdlib, in this process: the kernel work the cut-over cannot avoid.

    python bench/conntrack_cutover.py [--trials 5] [--pins 1,100,500] [--json]

This isolates the cut-over: the daemon around it (its 3 s bound on the
flush, the policy rule each pin also costs) is not in these figures.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure

NETLINK_NETFILTER = 12
CT_GET, CT_DELETE = (1 << 8) | 1, (1 << 8) | 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSGHDR = struct.Struct("=LHHLL")
NLATTR = struct.Struct("=HH")
CTA_TUPLE_ORIG, CTA_ID, CTA_ZONE = 1, 12, 18
CTA_TUPLE_IP, CTA_IP_V4_DST = 1, 2
PINNED_NET = ipaddress.ip_network("10.252.0.0/16")
OTHER_NET = ipaddress.ip_network("10.253.0.0/16")


def attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    out = {}
    while start + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(data, start)
        if length < NLATTR.size:
            break
        out[kind & 0x3FFF] = (start, start + length)
        start += (length + 3) & ~3
    return out


class Reference:
    """One dump of everything, one delete per matching entry: the floor."""

    def __init__(self, netns: str) -> None:
        from remsim_lab.network import call_in_netns

        self.sock = call_in_netns(netns, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        self.sock.bind((0, 0))
        self.sock.settimeout(5)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, payload: bytes) -> int:
        self.seq += 1
        body = struct.pack("=BBH", socket.AF_INET, 0, 0) + payload
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body)
        return self.seq

    def _replies(self) -> list[tuple[bytes, int, int]]:
        out: list[tuple[bytes, int, int]] = []
        while True:
            data = self.sock.recv(1 << 20)
            pos = 0
            while pos + NLMSGHDR.size <= len(data):
                length, kind, _f, _seq, _pid = NLMSGHDR.unpack_from(data, pos)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, pos + NLMSGHDR.size)[0]
                    if code and code != errno.ENOENT:
                        raise OSError(code, os.strerror(code))
                    return out
                out.append((data, pos + NLMSGHDR.size + 4, pos + length))
                pos += (length + 3) & ~3

    def cut_over(self, pinned: set[bytes]) -> int:
        self._send(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, b"")
        victims = []
        for data, start, end in self._replies():
            top = attrs(data, start, end)
            if CTA_TUPLE_ORIG not in top:
                continue
            t0, t1 = top[CTA_TUPLE_ORIG]
            ip = attrs(data, t0 + 4, t1).get(CTA_TUPLE_IP)
            if ip is None:
                continue
            dst = attrs(data, ip[0] + 4, ip[1]).get(CTA_IP_V4_DST)
            if dst is None or data[dst[0] + 4:dst[1]] not in pinned:
                continue
            keep = [data[t0:t1]] + [data[a:b] for k in (CTA_ZONE, CTA_ID)
                                    if k in top for a, b in [top[k]]]
            victims.append(b"".join(p + b"\0" * (-len(p) % 4) for p in keep))
        for payload in victims:
            self._send(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, payload)
            self._replies()
        return len(victims)


class Router:
    """A namespace with conntrack on and a default route into a veth pair of its own."""

    def __init__(self) -> None:
        self.ns = f"rsbct-{os.getpid()}-{uuid.uuid4().hex[:5]}"
        self.made = False

    def __enter__(self) -> Router:
        try:
            benchlib.run(["ip", "netns", "add", self.ns])
            self.made = True
            ip = ["ip", "-n", self.ns]
            benchlib.run([*ip, "link", "set", "lo", "up"])
            benchlib.run([*ip, "link", "add", "ct0", "type", "veth", "peer", "name", "ct1"])
            benchlib.run([*ip, "link", "set", "ct1", "up"])
            benchlib.run([*ip, "link", "set", "ct0", "up"])
            benchlib.run([*ip, "addr", "add", "10.251.5.2/24", "dev", "ct0"])
            benchlib.run([*ip, "route", "add", "default", "via", "10.251.5.1", "dev", "ct0"])
            benchlib.run([*ip, "neigh", "replace", "10.251.5.1", "lladdr", "02:00:00:00:00:01",
                          "dev", "ct0", "nud", "permanent"])
            subprocess.run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], check=True,
                           capture_output=True, text=True, input=(
                               "table inet rsbench {\n chain out {\n"
                               "  type filter hook output priority 0;\n"
                               "  ct state new counter\n }\n}\n"))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.made:
            subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)
            self.made = False

    def track(self, addresses: list[str]) -> None:
        """One tracked UDP flow to each address (a datagram out of the dummy device)."""
        from remsim_lab.network import call_in_netns

        def send() -> None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for a in addresses:
                    s.sendto(b"x", (a, 9))
            finally:
                s.close()

        call_in_netns(self.ns, send)


def main() -> int:
    p = benchlib.parser(__doc__, trials=5)
    p.add_argument("--pins", default="1,100,500", help="comma-separated pin counts")
    p.add_argument("--background", type=int, default=1000,
                   help="tracked flows to other addresses")
    args = p.parse_args()
    benchlib.need_root("conntrack_cutover")
    from remsim_supervisor.adapters.conntrack import flush_conntrack

    counts = [int(n) for n in args.pins.split(",") if n.strip()]
    hosts = list(PINNED_NET.hosts())
    others = [str(a) for a in list(OTHER_NET.hosts())[: args.background]]
    figures = []
    per_100: list[float] = []
    with benchlib.interrupts_as_exit(), Router() as router:
        ref = Reference(router.ns)
        try:
            router.track(others)
            for n in counts:
                pinned = [str(a) for a in hosts[:n]]
                packed = {ipaddress.ip_address(a).packed for a in pinned}
                ours, floor, deleted = [], [], []
                for _ in range(args.trials):
                    router.track(pinned)
                    t0 = time.perf_counter()
                    deleted.append(flush_conntrack(pinned, netns=router.ns))
                    ours.append((time.perf_counter() - t0) * 1000)
                    router.track(pinned)
                    t0 = time.perf_counter()
                    ref.cut_over(packed)
                    floor.append((time.perf_counter() - t0) * 1000)
                per_100 += [v * 100 / n for v in ours] if n >= 100 else []
                figures.append(Figure(
                    f"conntrack cut-over, {n} pin(s)", "ms", ours,
                    "one dump of the table + one delete per entry (stdlib, same netns)", floor,
                    target=10.0 * max(n, 100) / 100,
                    target_text=f"<= {10.0 * max(n, 100) / 100:g} ms (10 ms per 100 pins)",
                    extra={"deleted_per_trial": deleted, "background_flows": len(others)}))
        finally:
            ref.close()
    benchlib.emit("conntrack_cutover", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
